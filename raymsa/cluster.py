"""Starting or joining Ray for a study or a multi-worker training run: loopback-only by default, and an
object store that fits. Below train and study (both start Ray through it); imports nothing of raymsa.

A local study's Ray (GCS, raylet, object manager, workers, dashboard and its agents) listens on
127.0.0.1 only. On Linux Ray binds its services to the machine's address so that other nodes can
join; the single-node mode that Ray uses on macOS and Windows binds every one of them to
127.0.0.1 instead, and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 selects that mode on Linux too
(ray-project/ray#31166). The setting is read when ray is imported, which has happened by the time
a study starts Ray, so it is applied to both the environment (the processes Ray spawns) and the
module constant (this process), for the call to ray.init only. Joining a cluster (--address, or a
`ray start` on this machine) changes nothing: the cluster was started with its own addresses.

The object store: the study's data does not go through it (raymsa.data.arrays), so Ray's default
size is plenty for what does (Tune's parameters, results). A caller that does put data there says
how many bytes (`store_bytes`): a local Ray is then started with room for them, and a cluster
whose nodes have less is refused before anything runs, with the setting to change; never a store
that spills gigabytes to /tmp.
"""

from __future__ import annotations

import os
import shutil

import ray

LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
HEADROOM = 512 << 20  # Tune's own objects beside the caller's bytes
GiB = 1 << 30


class ClusterError(RuntimeError):
    """Ray cannot give the study what it needs; the message says what to set."""


def _shm_bytes() -> int:
    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:
        return 0


def _default_store_bytes() -> int:
    from ray._private.utils import get_system_memory

    # Ray's own default: 30% of the machine's memory, and no more than /dev/shm holds
    default = int(0.3 * get_system_memory())
    shm = _shm_bytes()
    return min(default, shm) if shm else default


def local_store_bytes(store_bytes: int) -> int | None:
    """object_store_memory for a local Ray holding `store_bytes` of the caller's objects (None: Ray's
    default is enough). Raises ClusterError when this machine cannot hold them in shared memory."""
    need = store_bytes + HEADROOM
    if need <= _default_store_bytes():
        return None
    shm = _shm_bytes()
    if need > shm:
        raise ClusterError(
            f"the object store needs {need / GiB:.1f} GiB ({store_bytes / GiB:.1f} GiB of data + "
            f"{HEADROOM / GiB:.1f} GiB headroom) but /dev/shm has {shm / GiB:.1f} GiB free: enlarge /dev/shm "
            f"(docker: --shm-size), or keep the data out of the store (a study memory-maps it)")
    return need


def _check_cluster_store(store_bytes: int) -> None:
    need = store_bytes + HEADROOM
    small = [(n["NodeManagerAddress"], n["Resources"].get("object_store_memory", 0)) for n in ray.nodes()
             if n.get("Alive") and n["Resources"].get("CPU", 0) > 0
             and n["Resources"].get("object_store_memory", 0) < need]
    if small:
        addr, have = small[0]
        ray.shutdown()
        raise ClusterError(
            f"{len(small)} node(s) of the cluster have less object store than the {need / GiB:.1f} GiB needed "
            f"(e.g. {addr}: {have / GiB:.1f} GiB): start them with `ray start --object-store-memory={need}` "
            f"(cluster.yaml: worker_start_ray_commands)")


def start_ray(address: str | None = None, *, store_bytes: int = 0, resources: dict[str, float] | None = None,
              **init_kwargs):
    """Join the Ray cluster at `address`, or start a loopback-only local Ray (or join the one a
    `ray start` runs on this machine). Returns ray.init's context."""
    if address:
        ctx = ray.init(address=address, **init_kwargs)
        if store_bytes:
            _check_cluster_store(store_bytes)
        return ctx
    object_store_memory = local_store_bytes(store_bytes)
    from ray._private import ray_constants

    saved_env, saved_const = os.environ.get(LOCAL_ONLY_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ctx = ray.init(include_dashboard=True, dashboard_host="127.0.0.1", resources=resources,
                       object_store_memory=object_store_memory, **init_kwargs)
        joined = False
    except ValueError:
        joined = True  # a running cluster to join (`ray start` here, or RAY_ADDRESS): refuses resources
    finally:
        _restore(saved_env, saved_const)
    if joined:
        ctx = ray.init(**init_kwargs)
        print("[raymsa] joined the Ray cluster running on this machine (--address picks another)")
        if store_bytes:
            _check_cluster_store(store_bytes)
    return ctx


def _restore(saved_env: str | None, saved_const: bool) -> None:
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = saved_const
    if saved_env is None:
        os.environ.pop(LOCAL_ONLY_ENV, None)
    else:
        os.environ[LOCAL_ONLY_ENV] = saved_env
