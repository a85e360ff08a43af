"""Which inputs a trained model relies on: permutation importance and gradient saliency."""

from climml.explain.gradients import saliency
from climml.explain.permutation import permutation_importance

__all__ = ["permutation_importance", "saliency"]
