"""Figures: loss curves, skill by lead, verification plots, importance rankings and maps.

``style`` (how figures are made and labelled), ``plots`` (line and matrix figures), ``maps``
(cartopy maps with packaged coastlines), ``importance`` (rankings, saliency maps). Every plotting
function returns a ``matplotlib.figure.Figure`` and saves it when given ``path=``.
"""
