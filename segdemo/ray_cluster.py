"""Joining a Ray cluster, or starting a local one, the same way for Ray Serve (`serving`) and Ray
Data (`ray_predict`): a local cluster listens on 127.0.0.1 only, without Ray's dashboard and
without usage statistics (nothing tries the internet)."""
from __future__ import annotations

import os

from segdemo.errors import SegDemoError

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


class RayClusterError(SegDemoError):
    """Ray cannot start here, or the cluster at the given address cannot be reached."""


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` (`ray start --head` printed it; "auto" finds one started on
    this machine), or start a local one with `num_cpus` (default: every core). Does nothing when
    this process is connected already."""
    import ray

    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"reach the cluster at {address}" if address else "start a local cluster"
        raise RayClusterError(f"Ray could not {where}: {exc}") from None
