"""Refusing a batch whose interval overlaps one already stored for its node (docs/api.md).

An overlap would count the shared seconds twice in every sum. The node sample's unique
(node, time) only catches an identical start; this catches the rest with one probe of that same
index: the newest stored sample of the node starting before this batch's end. Stored samples of a
node never overlap (this module sees to it), so their ends are in the order of their starts and
the newest one is the only one that can reach into this interval.

Concurrency: the node upsert that comes first in the batch's transaction locks the node's row
until COMMIT, so two batches of one node are serialized there, and the probe, a statement of its
own run after that lock is held, sees whatever the other one committed (READ COMMITTED takes a
new snapshot per statement).

Pods and containers: a pod's or container's sample ends where its batch ends, so with the node's
intervals apart, its interval can only reach back into a stored one when it starts before its
batch does (its own `interval_seconds` longer than the batch's, e.g. after a missed cycle). Only
those are probed, in one statement per table; the common batch probes nothing more.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

# The longest interval a stored sample can have: bounds the probe to the chunks it can be in.
MAX_INTERVAL = timedelta(seconds=3600)
# Ends and starts are written to the microsecond and collectors send times to the millisecond:
# touching intervals may differ by rounding, which is no double count.
TOLERANCE = timedelta(milliseconds=1)

NODE_PROBE = """
SELECT "time", interval_seconds FROM metrics_nodesample
WHERE node_id = %b AND "time" < %b AND "time" > %b
ORDER BY "time" DESC LIMIT 2
"""

_ENTITY_PROBE = """
SELECT DISTINCT ON ({key}) {key}, "time", interval_seconds FROM {table}
WHERE {key} = ANY(%b::int8[]) AND "time" < %b AND "time" > %b
ORDER BY {key}, "time" DESC
"""
POD_PROBE = _ENTITY_PROBE.format(key="pod_id", table="metrics_podsample")
CONTAINER_PROBE = _ENTITY_PROBE.format(key="container_id", table="metrics_containersample")


class Duplicate(Exception):
    """The batch's interval is stored exactly: a retry."""


def _span(start: datetime, seconds: float) -> str:
    end = start + timedelta(seconds=seconds)
    return f"[{start.isoformat()}, {end.isoformat()})"


def check_node(cursor: Any, node_id: int, start: datetime, end: datetime, interval: float, inserted: bool) -> dict[str, list[str]]:
    """Errors naming `time` and `interval_seconds` if [start, end) overlaps a stored node interval.

    `inserted`: whether this transaction just stored its node sample at `start` (else a sample
    starting there was stored before: a retry when its interval is the same, raising Duplicate).
    """
    rows = cursor.execute(NODE_PROBE, [node_id, end, start - MAX_INTERVAL]).fetchall()
    for stored_start, stored_interval in rows:
        if stored_start == start:
            if inserted:
                continue  # our own row
            if abs(stored_interval - interval) < 1e-6:
                raise Duplicate
        elif stored_start + timedelta(seconds=stored_interval) <= start + TOLERANCE:
            return {}
        message = (
            f"This batch's interval {_span(start, interval)} overlaps the interval "
            f"{_span(stored_start, stored_interval)} already stored for this node; its usage would "
            "count twice. Only a retry of the very same batch (same time and interval_seconds) is "
            "accepted (as a duplicate)."
        )
        return {"time": [message], "interval_seconds": [message]}
    return {}


def check_members(
    cursor: Any,
    probe: str,
    reaching_back: dict[int, tuple[str, datetime, float]],
    end: datetime,
    what: str,
) -> dict[str, list[str]]:
    """Errors for pods or containers (`reaching_back`: id -> (path, start, interval)) whose
    interval starts before their batch's and overlaps a stored sample of theirs."""
    if not reaching_back:
        return {}
    earliest = min(start for _, start, _ in reaching_back.values())
    rows = cursor.execute(probe, [sorted(reaching_back), end, earliest - MAX_INTERVAL]).fetchall()
    errors: dict[str, list[str]] = {}
    for key, stored_start, stored_interval in rows:
        path, start, interval = reaching_back[key]
        if stored_start + timedelta(seconds=stored_interval) > start + TOLERANCE:
            errors[path] = [
                f"This {what}'s interval {_span(start, interval)} overlaps its sample "
                f"{_span(stored_start, stored_interval)} already stored (overlapping intervals)."
            ]
    return errors
