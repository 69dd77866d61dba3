"""What a batch may say: Kubernetes name rules and physical bounds on every number (docs/api.md).

Names follow the Kubernetes API's own validation, so whatever is stored is a name Kubernetes could
have given, contains no '/', and every URL the API builds from it reverses:

* node and pod names, owner and Deployment names: DNS-1123 subdomains (at most 253 characters of
  lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a
  letter or digit);
* namespaces and container names: DNS-1123 labels (at most 63 characters, no dots);
* label keys: an optional DNS-1123 subdomain prefix and '/', then a name of at most 63 characters
  of letters, digits, '-', '_' and '.', starting and ending with a letter or digit; label values
  the same as that name, or empty.

Numbers are bounded by what a machine can do in the sample's interval: a value past these is a
collector bug or an attack, and stored it would overflow the rollups' sums for everyone (issue 8).
The bounds are generous on purpose (MARGIN), so that counter-read jitter never refuses a real batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, Field

# --- names -----------------------------------------------------------------------------------------

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
DNS1123_LABEL = rf"^{_LABEL}$"
DNS1123_SUBDOMAIN = rf"^{_LABEL}(?:\.{_LABEL})*$"
_QUALIFIED = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = rf"^(?:{_LABEL}(?:\.{_LABEL})*/)?{_QUALIFIED}$"
LABEL_VALUE = rf"^(?:{_QUALIFIED})?$"
# An object kind: CamelCase, as in ReplicaSet or a custom resource's Kind.
KIND = r"^[A-Za-z][A-Za-z0-9]*$"

# The answer for a name that does not match, by pattern (schema._message looks it up).
PATTERN_MESSAGES = {
    DNS1123_SUBDOMAIN: (
        "Not a valid Kubernetes name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
        "each dot-separated part starting and ending with a letter or digit, at most 253 characters)."
    ),
    DNS1123_LABEL: (
        "Not a valid Kubernetes name: a DNS-1123 label (lowercase letters, digits and '-', starting "
        "and ending with a letter or digit, at most 63 characters)."
    ),
    LABEL_KEY: (
        "Not a valid label key: an optional DNS-1123 subdomain prefix and '/', then at most 63 "
        "letters, digits, '-', '_' or '.', starting and ending with a letter or digit."
    ),
    LABEL_VALUE: (
        "Not a valid label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting "
        "and ending with a letter or digit."
    ),
    KIND: "Not a valid object kind (CamelCase letters and digits, such as ReplicaSet).",
}


def _prefix_at_most_253(key: str) -> str:
    # The pattern bounds each part of the prefix, not the prefix as a whole.
    if len(key) > 253 and len(key.rpartition("/")[0]) > 253:
        raise ValueError("The label key's prefix is longer than 253 characters.")
    return key


Subdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)]
Label = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
NodeName = Subdomain
PodName = Subdomain
OwnerName = Subdomain
DeploymentName = Subdomain
NamespaceName = Label
ContainerName = Label
OwnerKind = Annotated[str, Field(min_length=1, max_length=63, pattern=KIND)]
LabelKey = Annotated[
    str, Field(min_length=1, max_length=317, pattern=LABEL_KEY), AfterValidator(_prefix_at_most_253)
]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]

# --- bounds ----------------------------------------------------------------------------------------

# From about a second (finer intervals are noise, and a tiny one divides rates into infinity) to
# the contract's hour.
MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 3600.0
Interval = Annotated[float, Field(ge=MIN_INTERVAL_SECONDS, le=MAX_INTERVAL_SECONDS, allow_inf_nan=False)]

# Counter reads are not quite simultaneous, so a rate can come out a little above the truth.
MARGIN = 1.5
# The largest machines have a few thousand logical CPUs and a few tens of TiB of memory.
MAX_CORES = 8192.0
MAX_MEMORY_BYTES = 2**50  # 1 PiB
MAX_FS_BYTES = 2**60  # 1 EiB
# A limit may exceed the node (Kubernetes allows it) but not absurdly.
MAX_LIMIT_CORES = 1_000_000.0
MAX_GPUS = 64
# Per second of interval, for a whole node (a pod or container cannot do more than its node).
MAX_DISK_BYTES_PER_SECOND = 2**37  # ~137 GB/s
MAX_DISK_OPS_PER_SECOND = 2**27  # ~134 M IOPS
MAX_NET_BYTES_PER_SECOND = 2**38  # ~275 GB/s (2.2 Tbit/s)
MAX_PACKETS_PER_SECOND = 2**30  # ~1 G packets/s
MAX_CFS_PERIODS_PER_SECOND = 1000  # the shortest CFS period is 1 ms
MAX_OOM_KILLS_PER_SECOND = 1000
# A model server (one pod, all its engines): far above the fastest inference servers.
MAX_TOKENS_PER_SECOND = 10**7
MAX_REQUESTS_PER_SECOND = 10**6
MAX_REQUESTS_IN_FLIGHT = 10**6
MAX_LATENCY_SECONDS = 10**7


@dataclass(frozen=True)
class Node:
    """What bounds a batch's samples: its node's cores and memory (or the absolute caps)."""

    cores: float
    memory: float


def _cpu(interval: float, node: Node) -> float:
    return interval * node.cores * MARGIN


def _memory(interval: float, node: Node) -> float:
    return node.memory * MARGIN


def _rate(per_second: float) -> Callable[[float, Node], float]:
    return lambda interval, node: interval * per_second * MARGIN


def _fixed(limit: float) -> Callable[[float, Node], float]:
    return lambda interval, node: limit


def _psi(interval: float, node: Node) -> float:
    # Stall time is wall-clock time during which some (or all) tasks waited: at most the interval.
    return interval * MARGIN


# (bound, what it says) by field; _kind() picks one by name for fields not listed here.
_EXPLICIT: dict[str, tuple[Callable[[float, Node], float], str]] = {
    "cpu_capacity_cores": (_fixed(MAX_CORES), f"at most {MAX_CORES:g} cores"),
    "cpu_limit_cores": (_fixed(MAX_LIMIT_CORES), f"at most {MAX_LIMIT_CORES:g} cores"),
    "memory_total_bytes": (_fixed(MAX_MEMORY_BYTES), "at most 1 PiB"),
    "memory_limit_bytes": (_fixed(MAX_MEMORY_BYTES), "at most 1 PiB"),
    "fs_used_bytes": (_fixed(MAX_FS_BYTES), "at most 1 EiB"),
    "fs_capacity_bytes": (_fixed(MAX_FS_BYTES), "at most 1 EiB"),
    "gpu_memory_bytes": (_fixed(MAX_MEMORY_BYTES), "at most 1 PiB"),
    "cpu_periods": (_rate(MAX_CFS_PERIODS_PER_SECOND), "at most 1,000 CFS periods per second"),
    "cpu_throttled_periods": (_rate(MAX_CFS_PERIODS_PER_SECOND), "at most 1,000 CFS periods per second"),
    "oom_kills": (_rate(MAX_OOM_KILLS_PER_SECOND), "at most 1,000 per second"),
    "restarts": (_fixed(2**31 - 1), "at most 2^31 - 1"),
    # Model serving (the pod's `serving` block).
    "requests_running": (_fixed(MAX_REQUESTS_IN_FLIGHT), "at most 10^6 requests in flight"),
    "requests_waiting": (_fixed(MAX_REQUESTS_IN_FLIGHT), "at most 10^6 requests in flight"),
    "requests_succeeded": (_rate(MAX_REQUESTS_PER_SECOND), "at most 10^6 requests per second"),
    "preemptions": (_rate(MAX_REQUESTS_PER_SECOND), "at most 10^6 per second"),
}


def _kind(name: str) -> tuple[Callable[[float, Node], float], str]:
    if name in _EXPLICIT:
        return _EXPLICIT[name]
    if name.startswith("psi_") and name.endswith("_seconds"):
        return _psi, "at most the interval"
    if name.endswith("_cores"):
        return _fixed(MAX_CORES), f"at most {MAX_CORES:g} cores"
    if name.endswith("cpu_seconds") or name == "cpu_throttled_seconds":
        return _cpu, "at most the interval x the node's cores"
    if name.startswith("memory_") and name.endswith("_bytes"):
        return _memory, "at most the node's memory"
    if name.startswith("disk_") and name.endswith("_bytes"):
        return _rate(MAX_DISK_BYTES_PER_SECOND), "at most 128 GiB/s of disk traffic"
    if name.startswith("disk_") and name.endswith("_ops"):
        return _rate(MAX_DISK_OPS_PER_SECOND), "at most 2^27 disk operations per second"
    if name.startswith("net_") and name.endswith("_bytes"):
        return _rate(MAX_NET_BYTES_PER_SECOND), "at most 256 GiB/s of network traffic"
    if name.startswith("net_") and name.endswith(("_packets", "_errors", "_dropped")):
        return _rate(MAX_PACKETS_PER_SECOND), "at most 2^30 packets per second"
    if name.endswith("_tokens") or name in ("itl_count",):
        # Every generated token is one inter-token latency observation.
        return _rate(MAX_TOKENS_PER_SECOND), "at most 10^7 tokens per second"
    if name in ("ttft_count", "e2e_count"):
        return _rate(MAX_REQUESTS_PER_SECOND), "at most 10^6 requests per second"
    if name.endswith("_seconds_sum"):
        # Each request in flight adds at most the interval to a latency sum.
        return _rate(MAX_REQUESTS_IN_FLIGHT), "at most 10^6 requests in flight x the interval"
    if name.endswith(("_p50_seconds", "_p95_seconds")):
        return _fixed(MAX_LATENCY_SECONDS), "at most 10^7 seconds"
    if name.endswith("_percent"):
        return _fixed(100.0 * MAX_GPUS), f"at most 100 per device, {MAX_GPUS} devices"
    if name.endswith("_bytes"):
        return _memory, "at most the node's memory"
    raise LookupError(f"No physical bound for the numeric field {name!r}: add one in metrics/ingest/rules.py")


def _is_number(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if annotation in (int, float):
        return True
    args = [a for a in get_args(annotation) if a is not type(None)]
    args = [get_args(a)[0] if get_origin(a) is Annotated else a for a in args]
    return get_origin(annotation) in (Union, UnionType) and bool(args) and all(a in (int, float) for a in args)


def _numeric_fields(model: type[BaseModel]) -> list[str]:
    # interval_seconds is bounded by its type, and it is what the others are bounded by.
    return [
        name for name, info in model.model_fields.items()
        if name != "interval_seconds" and _is_number(info.annotation)
    ]


class Bounds:
    """The numeric fields of one ingest model, with their bounds; built once at import."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.fields = _numeric_fields(model)
        kinds = [_kind(f) for f in self.fields]
        self._bounds = [k[0] for k in kinds]
        self._reasons = [k[1] for k in kinds]
        # attrgetter of several names returns a tuple; every model here has several numbers.
        assert len(self.fields) > 1, model
        self._values = attrgetter(*self.fields)
        self.getters = [attrgetter(f) for f in self.fields]

    def limits(self, interval: float, node: Node) -> tuple[float, ...]:
        return tuple(bound(interval, node) for bound in self._bounds)

    def errors(self, item: Any, limits: tuple[float, ...], path: str, interval: float) -> dict[str, list[str]]:
        values = self._values(item)
        errors: dict[str, list[str]] = {}
        for i, (value, limit) in enumerate(zip(values, limits)):
            if value is not None and value > limit:
                errors[f"{path}.{self.fields[i]}"] = [
                    f"{value:g} is more than physically possible for a {interval:g} s interval "
                    f"({self._reasons[i]}: {limit:g})."
                ]
        return errors


def node_of(cores: float | None, memory: int | None) -> Node:
    """The node's own figures when it gave them (and they are sane), else the absolute caps."""
    return Node(
        cores=cores if cores and cores <= MAX_CORES else MAX_CORES,
        memory=memory if memory and memory <= MAX_MEMORY_BYTES else MAX_MEMORY_BYTES,
    )


def _group_errors(
    bounds: Bounds, items: list[tuple[str, Any]], interval: float, node: Node
) -> dict[str, list[str]]:
    """Errors of many items sharing one interval. Fast path (every batch): per field, the largest
    value over all items against its bound, in C-level passes; items are looked at one by one
    only when some field's largest value is past its bound."""
    limits = bounds.limits(interval, node)
    objects = [item for _, item in items]
    for getter, limit in zip(bounds.getters, limits):
        if max(filter(None, map(getter, objects)), default=0) > limit:
            break
    else:
        return {}
    errors: dict[str, list[str]] = {}
    for path, item in items:
        errors.update(bounds.errors(item, limits, path, interval))
    return errors


def bound_errors(
    batch: Any, node_bounds: Bounds, pod_bounds: Bounds, container_bounds: Bounds, serving_bounds: Bounds
) -> dict[str, list[str]]:
    """Every number past its physical bound, by path (the batch is pydantic-valid already)."""
    usage = batch.node_usage
    node = node_of(usage.cpu_capacity_cores, usage.memory_total_bytes)
    interval = batch.interval_seconds
    errors = node_bounds.errors(usage, node_bounds.limits(interval, node), "node_usage", interval)
    collector = batch.collector
    if collector is not None:
        if collector.cycle_cpu_seconds is not None and collector.cycle_cpu_seconds > _cpu(interval, node):
            errors["collector.cycle_cpu_seconds"] = [
                f"More than the interval x the node's cores ({_cpu(interval, node):g})."
            ]
        for name, source in (collector.sources or {}).items():
            if source.seconds is not None and source.seconds > MAX_INTERVAL_SECONDS:
                errors[f'collector.sources["{name}"].seconds'] = [
                    f"At most {MAX_INTERVAL_SECONDS:g} seconds."
                ]
    # Grouped by their interval (almost always the batch's): one bound per field and group.
    pods: dict[float, list[tuple[str, Any]]] = {}
    containers: dict[float, list[tuple[str, Any]]] = {}
    servings: dict[float, list[tuple[str, Any]]] = {}
    for i, pod in enumerate(batch.pods):
        pod_interval = pod.interval_seconds or interval
        pods.setdefault(pod_interval, []).append((f"pods[{i}]", pod))
        if pod.serving is not None:
            servings.setdefault(pod.serving.interval_seconds or pod_interval, []).append(
                (f"pods[{i}].serving", pod.serving)
            )
        for j, container in enumerate(pod.containers):
            containers.setdefault(container.interval_seconds or pod_interval, []).append(
                (f"pods[{i}].containers[{j}]", container)
            )
    for seconds, items in pods.items():
        errors.update(_group_errors(pod_bounds, items, seconds, node))
    for seconds, items in containers.items():
        errors.update(_group_errors(container_bounds, items, seconds, node))
    for seconds, items in servings.items():
        errors.update(_group_errors(serving_bounds, items, seconds, node))
    return errors
