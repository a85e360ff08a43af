"""Joining JAX's multi-process runtime, so that one training job spans several processes/hosts.

``initialize(cfg.train.distributed)`` calls ``jax.distributed.initialize`` with the configured
coordinator, process count and id, or, when none is configured, with the settings of a cluster
JAX detects itself (Slurm, Open MPI, Cloud TPU pods). It must run before anything uses a JAX
device; it is idempotent and a no-op for a single process. Afterwards ``jax.devices()`` lists
the devices of every process, and ``climml.train.parallel`` builds its mesh over all of them.

On CPU the processes exchange gradients through gloo collectives, which is how the tests run
two processes on one machine.
"""

from __future__ import annotations

import jax

from climml.config import DistributedConfig
from climml.errors import ConfigError, expected


def check(cfg: DistributedConfig) -> None:
    """``ConfigError`` unless ``cfg`` is all unset (one process, or the detected cluster) or
    names a coordinator ``host:port`` with the process count and this process's id."""
    explicit = (cfg.coordinator, cfg.num_processes, cfg.process_id)
    if all(v is None for v in explicit):
        return
    for name, value in zip(("coordinator", "num_processes", "process_id"), explicit, strict=True):
        if value is None:
            want = "set together with coordinator, num_processes and process_id"
            raise ConfigError(expected(f"train.distributed.{name}", want, "null"))
    host, _, port = cfg.coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(expected("train.distributed.coordinator", "HOST:PORT", cfg.coordinator))
    if not 0 <= cfg.process_id < cfg.num_processes:
        want = f"an integer in [0, {cfg.num_processes - 1}] (num_processes {cfg.num_processes})"
        raise ConfigError(expected("train.distributed.process_id", want, cfg.process_id))


def initialize(cfg: DistributedConfig) -> int:
    """Join the runtime of ``cfg`` (or of the detected cluster); return the process count.

    Idempotent: once initialized, later calls only return the count. Raises ``ConfigError``
    when JAX already started its devices in this process as a single process (initialization
    must come first).
    """
    check(cfg)
    if jax.distributed.is_initialized():
        return jax.process_count()
    if cfg.coordinator is None:
        if _detected_processes() <= 1:
            return 1
        kwargs = {}  # jax reads the cluster's coordinator, count and id itself
    elif cfg.num_processes == 1:
        return 1
    else:
        kwargs = {
            "coordinator_address": cfg.coordinator,
            "num_processes": cfg.num_processes,
            "process_id": cfg.process_id,
        }
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        # CPU processes need a collectives library to all-reduce; gloo ships with jaxlib.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as err:  # raised when this process already created its JAX backend
        raise ConfigError(
            expected(
                "train.distributed",
                "initialization before any JAX computation in this process",
                str(err).splitlines()[0],
            )
        ) from None
    return jax.process_count()


def process_count(cfg: DistributedConfig) -> int:
    """Processes a run of ``cfg`` spans, without joining the runtime."""
    check(cfg)
    if jax.distributed.is_initialized():
        return jax.process_count()
    return _detected_processes() if cfg.num_processes is None else cfg.num_processes


def _detected_processes() -> int:
    """Processes of the cluster JAX's own detectors find (1 where they find none).

    JAX exposes its detectors (Slurm, Open MPI, Cloud TPU, Kubernetes) only through
    ``jax.distributed.initialize``, which fails outside a cluster; asking them here first keeps a
    plain one-process run free of a coordinator service. Opt-in detectors (mpi4py) are skipped,
    as ``jax.distributed.initialize`` itself skips them.
    """
    from jax._src.clusters import ClusterEnv

    for env in ClusterEnv._cluster_types:
        if not env.opt_in_only_method and env.is_env_present():
            return int(env.get_process_count())
    return 1


def is_primary() -> bool:
    """Whether this process writes the run's shared files (process 0; always true alone)."""
    return jax.process_index() == 0
