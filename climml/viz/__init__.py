"""Figures: training curves, skill, importance rankings, maps."""
