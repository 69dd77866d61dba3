"""Removing a node for good: its inventory, every sample it sent, and what the rollups held of it.

`manage.py deletenode NAME` (and the admin's delete, which cascades only the inventory) exist for a
node that will not come back, e.g. the one the README's ingest example makes. Samples are not
tied to the inventory by foreign-key constraints (an index probe per row on the ingest path), so
they are deleted here by their (key, time) indexes. The rollups are then told about the time span
the node covered, as a late batch would (metrics.rollups.record_ingested_range), so the next
refresh recomputes exactly those buckets without it: its own rows go, and its pods leave the
namespace and Deployment sums. TimescaleDB's continuous aggregates (tier tsl) log the DELETE
themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction

from metrics import rollups
from metrics.models import Container, Node, Pod


@dataclass
class Removed:
    node: str
    pods: int
    containers: int
    node_samples: int
    pod_samples: int
    container_samples: int


class NoSuchNode(Exception):
    pass


def delete_node(name: str) -> Removed:
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(name=name).first()
        if node is None:
            raise NoSuchNode(name)
        pod_ids = list(Pod.objects.filter(node=node).values_list("id", flat=True))
        containers = Container.objects.filter(pod_id__in=pod_ids).count()
        with connection.cursor() as cursor:
            cursor.execute(
                'SELECT min("time"), max("time" + make_interval(secs => interval_seconds)) '
                "FROM metrics_nodesample WHERE node_id = %s",
                [node.id],
            )
            first, last = cursor.fetchone()
            cursor.execute(
                'SELECT min("time"), max("time" + make_interval(secs => interval_seconds)) '
                "FROM metrics_podsample WHERE pod_id = ANY(%s)",
                [pod_ids],
            )
            pod_first, pod_last = cursor.fetchone()
            cursor.execute("DELETE FROM metrics_containersample WHERE pod_id = ANY(%s)", [pod_ids])
            container_samples = cursor.rowcount
            cursor.execute("DELETE FROM metrics_podsample WHERE pod_id = ANY(%s)", [pod_ids])
            pod_samples = cursor.rowcount
            cursor.execute("DELETE FROM metrics_nodesample WHERE node_id = %s", [node.id])
            node_samples = cursor.rowcount
            starts = [t for t in (first, pod_first) if t is not None]
            ends = [t for t in (last, pod_last) if t is not None]
            if starts:
                rollups.record_ingested_range(cursor, min(starts), max(ends))
        node.delete()  # the pods and containers cascade
        return Removed(name, len(pod_ids), containers, node_samples, pod_samples, container_samples)
