"""Shared fixtures: one small synthetic dataset and one Ray cluster per test session."""

from __future__ import annotations

import os

import pytest

# Keep Ray's side effects inside the test session: no auth token in ~/.ray, no usage stats.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def tiny_data():
    """A MOSI-shaped synthetic dataset with few samples (real shapes, small N)."""
    from raymsa.data.synth import synthesize

    return synthesize("mosi", seed=0, scale=0.08)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local Ray instance for every test that needs Ray (starting one costs ~5 s)."""
    import ray

    from raymsa.search.tune import DRIVER_RESOURCE

    if ray.is_initialized():
        ray.shutdown()
    # workers must import functions defined in test modules (e.g. fault-injecting Train workers)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    pythonpath = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=True, resources={DRIVER_RESOURCE: 100},
             _temp_dir=str(tmp_path_factory.mktemp("ray")), configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    yield ray
    ray.shutdown()
