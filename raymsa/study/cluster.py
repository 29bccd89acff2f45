"""Moved to raymsa.cluster (below train and study, which both start Ray); these names stay importable
from here for code written against the old place."""

from raymsa.cluster import HEADROOM, ClusterError, local_store_bytes, start_ray

__all__ = ["HEADROOM", "ClusterError", "local_store_bytes", "start_ray"]
