"""Model families (Flax NNX) and the registry that builds them from configs."""

from climml.models.registry import IOSpec, build, config_class, names, register

__all__ = ["IOSpec", "build", "config_class", "names", "register"]
