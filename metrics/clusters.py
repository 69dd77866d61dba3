"""Which cluster a batch writes into, and the clusters' names for the read API.

A batch's cluster is, in this order: the cluster its token is bound to (a batch naming another is
refused, 403 naming `cluster`); the cluster the batch names (made on first use); for a node
already known, its own cluster; else the server's CLUSTER_NAME. A node stays in the cluster it
was first seen in: a batch naming another cluster for it is refused (409, or 403 for a bound
token) rather than moving the node and its history silently. Node names are unique across the
clusters of one installation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psycopg
from django.conf import settings

from metrics.models import ApiToken, Cluster

# name -> id. Clusters are few and are never renamed by ingest; a stale id (the cluster deleted
# in the admin, possible only while it has no nodes) is dropped by clear_cache() and retried.
_ids: dict[str, int] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _ids.clear()


def cluster_id(name: str, *, create: bool = True) -> int | None:
    """The id of the cluster named `name`, made if missing (unless create=False: None)."""
    found = _ids.get(name)
    if found is not None:
        return found
    if create:
        found = Cluster.objects.get_or_create(name=name)[0].pk
    else:
        found = Cluster.objects.filter(name=name).values_list("pk", flat=True).first()
        if found is None:
            return None
    with _lock:
        _ids[name] = found
    return found


class ClusterRefused(Exception):
    """The batch may not write into this cluster; `status` is 403 (token) or 409 (node)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class IngestCluster:
    id: int
    # True when the batch or its token chose the cluster: a known node must already be in it.
    strict: bool
    # True when the token chose it: a mismatch is the token's, so 403.
    bound: bool
    # The name the batch gave, to look the id up again (resolve_again).
    named: str | None = None


def for_batch(named: str | None, token: ApiToken | None) -> IngestCluster:
    """The cluster a batch writes into (module docstring); raises ClusterRefused."""
    bound = token.cluster_id if token is not None else None
    if bound is not None:
        if named is not None and cluster_id(named, create=False) != bound:
            raise ClusterRefused(403, f"This token may write only into cluster {_name(bound)!r}.")
        return IngestCluster(bound, strict=True, bound=True)
    if named is not None:
        found = cluster_id(named)
        assert found is not None
        return IngestCluster(found, strict=True, bound=False, named=named)
    default = cluster_id(settings.CLUSTER_NAME)
    assert default is not None
    return IngestCluster(default, strict=False, bound=False)


def resolve_again(cluster: IngestCluster) -> IngestCluster:
    """The same choice with fresh ids, after a cached id turned out deleted. A bound token's
    cluster cannot have been deleted (PROTECT), so only a named or the default one is looked up."""
    clear_cache()
    if cluster.bound:
        return cluster
    found = cluster_id(cluster.named or settings.CLUSTER_NAME)
    assert found is not None
    return IngestCluster(found, cluster.strict, False, cluster.named)


def is_missing_cluster(exc: BaseException) -> bool:
    """Whether an IntegrityError is a node row pointing at a cluster that no longer exists."""
    cause = exc.__cause__
    return isinstance(cause, psycopg.errors.ForeignKeyViolation) and "cluster" in (
        getattr(cause.diag, "constraint_name", None) or ""
    )


def refuse_node(node: str, node_cluster: int, wanted: IngestCluster) -> ClusterRefused:
    """The answer for a known node of another cluster than the batch's."""
    if wanted.bound:
        return ClusterRefused(
            403,
            f"Node {node!r} belongs to cluster {_name(node_cluster)!r}; this token may write only "
            f"into cluster {_name(wanted.id)!r}.",
        )
    return ClusterRefused(
        409,
        f"Node {node!r} belongs to cluster {_name(node_cluster)!r}, not {_name(wanted.id)!r}. Node "
        "names are unique across clusters; rename the cluster in the admin, or delete the node there "
        "to start it again in the new cluster.",
    )


def _name(pk: int) -> str:
    return Cluster.objects.filter(pk=pk).values_list("name", flat=True).first() or f"#{pk}"
