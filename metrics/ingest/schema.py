"""The ingest batch (docs/api.md "Ingest"), as pydantic models validated straight from the body bytes.

Strict everywhere: JSON strings are never coerced to numbers, counts must be integers, every number
is finite and >= 0, and unknown keys are refused so a collector typo never silently drops a metric.
`null` means "no data" and is kept as NULL, never turned into 0.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import from_json

from metrics.ingest.gpu_schema import MAX_GPUS, IngestGpu, check_gpus
from metrics.ingest import duplicates, rules

# Bigint columns hold the integers; anything larger could not be stored.
BIGINT_MAX = 2**63 - 1
# Integer columns (oom_kills, restarts).
INT_MAX = 2**31 - 1
# A batch may say its interval ends a little in the future: collector and server clocks drift.
MAX_FUTURE = timedelta(minutes=5)
MAX_PODS = 1000
MAX_CONTAINERS = 100
MAX_LABELS = 256
MAX_WARNINGS = 100

Float = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Bytes = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
Count = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
SmallCount = Annotated[int, Field(ge=0, le=INT_MAX)]
Percent = Annotated[float, Field(ge=0, le=100 * 64, allow_inf_nan=False)]  # one value per GPU summed
# Names (Kubernetes rules) and the interval's range: metrics/ingest/rules.py.
Interval = rules.Interval
Text = Annotated[str, Field(max_length=1000)]

# RFC 3339 allows "T", "t" or a space between date and time; pydantic also takes "_" and dates alone.
_RFC3339_SEPARATOR = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PressureAndGpu(_Strict):
    psi_cpu_some_seconds: Float | None = None
    psi_memory_some_seconds: Float | None = None
    psi_memory_full_seconds: Float | None = None
    psi_io_some_seconds: Float | None = None
    psi_io_full_seconds: Float | None = None
    gpu_utilization_percent: Percent | None = None
    gpu_memory_bytes: Bytes | None = None


class NetworkCounters(_Strict):
    net_rx_packets: Count | None = None
    net_tx_packets: Count | None = None
    net_rx_errors: Count | None = None
    net_tx_errors: Count | None = None
    net_rx_dropped: Count | None = None
    net_tx_dropped: Count | None = None


class IngestNodeUsage(PressureAndGpu, NetworkCounters):
    # Required keys; null = no data.
    cpu_seconds: Float | None
    cpu_capacity_cores: Float | None
    memory_working_set_bytes: Bytes | None
    memory_total_bytes: Bytes | None
    memory_available_bytes: Bytes | None
    disk_read_bytes: Bytes | None
    disk_write_bytes: Bytes | None
    net_rx_bytes: Bytes | None
    net_tx_bytes: Bytes | None
    fs_used_bytes: Bytes | None
    fs_capacity_bytes: Bytes | None
    # Optional.
    memory_rss_bytes: Bytes | None = None
    memory_cache_bytes: Bytes | None = None
    disk_read_ops: Count | None = None
    disk_write_ops: Count | None = None


class Throttling(_Strict):
    cpu_throttled_seconds: Float | None = None
    cpu_throttled_periods: Count | None = None
    cpu_periods: Count | None = None
    oom_kills: SmallCount | None = None


# --- pod state and spec (alerting, issue 10): all optional, null = unknown ------------------------

Cores = Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)]
Reason = Annotated[str, Field(min_length=1, max_length=128)]


def _rfc3339_value(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not _RFC3339_SEPARATOR.match(value)):
        raise ValueError("Expected an RFC 3339 date-time such as 2026-11-22T22:40:10Z")
    return value


class ContainerState(_Strict):
    ready: bool | None = None
    state: Literal["running", "waiting", "terminated"] | None = None
    # The waiting or terminated reason, e.g. CrashLoopBackOff, ImagePullBackOff, Completed.
    state_reason: Reason | None = None
    last_termination_reason: Reason | None = None
    last_termination_time: Annotated[datetime, Field(strict=False)] | None = None
    cpu_request_cores: Cores | None = None
    memory_request_bytes: Bytes | None = None

    @field_validator("last_termination_time", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        return _rfc3339_value(value)

    @field_validator("last_termination_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError("The time needs an offset, e.g. Z or +00:00")
        return value


class PodState(_Strict):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] | None = None
    ready: bool | None = None
    cpu_request_cores: Cores | None = None
    memory_request_bytes: Bytes | None = None


# --------------------------------------------------------------------------------------------------


class IngestContainer(PressureAndGpu, Throttling, ContainerState):
    name: rules.ContainerName
    id: Annotated[str, Field(max_length=128)]
    image: Annotated[str, Field(max_length=512)]
    cpu_seconds: Float | None
    memory_working_set_bytes: Bytes | None
    disk_read_bytes: Bytes | None
    disk_write_bytes: Bytes | None
    interval_seconds: Interval | None = None
    memory_rss_bytes: Bytes | None = None
    memory_cache_bytes: Bytes | None = None
    disk_read_ops: Count | None = None
    disk_write_ops: Count | None = None
    cpu_limit_cores: Float | None = None
    memory_limit_bytes: Bytes | None = None
    restarts: SmallCount | None = None


# --- model serving (vLLM / SGLang pods; collector/sources/modelserver.py) ----------------------

Seconds = Annotated[float, Field(ge=0, le=10**7, allow_inf_nan=False)]
Requests = Annotated[float, Field(ge=0, le=10**9, allow_inf_nan=False)]


class IngestServing(_Strict):
    """What a model server did during the interval: counters as usage during it, gauges at its
    end, latency histograms as the interval's sum, count and interpolated p50/p95."""

    # The interval the counters cover, when it differs from the pod's (a scrape came back late).
    interval_seconds: Interval | None = None
    requests_running: Requests | None = None
    requests_waiting: Requests | None = None
    kv_cache_usage_percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    prompt_tokens: Count | None = None
    generation_tokens: Count | None = None
    requests_succeeded: Count | None = None
    preemptions: Count | None = None
    ttft_seconds_sum: Float | None = None
    ttft_count: Count | None = None
    ttft_p50_seconds: Seconds | None = None
    ttft_p95_seconds: Seconds | None = None
    itl_seconds_sum: Float | None = None
    itl_count: Count | None = None
    itl_p50_seconds: Seconds | None = None
    itl_p95_seconds: Seconds | None = None
    e2e_seconds_sum: Float | None = None
    e2e_count: Count | None = None
    e2e_p50_seconds: Seconds | None = None
    e2e_p95_seconds: Seconds | None = None
    restarted: bool = False


class ModelServing(_Strict):
    model_server: Literal["vllm", "sglang"] | None = None
    model_name: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    serving: IngestServing | None = None


class IngestPod(ModelServing, PressureAndGpu, NetworkCounters, Throttling, PodState):
    uid: Annotated[str, Field(min_length=1, max_length=64)]
    name: rules.PodName
    namespace: rules.NamespaceName
    owner_kind: rules.OwnerKind | None
    owner_name: rules.OwnerName | None
    deployment: rules.DeploymentName | None
    qos: Literal["Guaranteed", "Burstable", "BestEffort"] | None
    labels: Annotated[dict[rules.LabelKey, rules.LabelValue], Field(max_length=MAX_LABELS)]
    cpu_seconds: Float | None
    memory_working_set_bytes: Bytes | None
    disk_read_bytes: Bytes | None
    disk_write_bytes: Bytes | None
    net_rx_bytes: Bytes | None
    net_tx_bytes: Bytes | None
    cpu_limit_cores: Float | None
    memory_limit_bytes: Bytes | None
    containers: Annotated[list[IngestContainer], Field(max_length=MAX_CONTAINERS)]
    interval_seconds: Interval | None = None
    # Says why net_* is null; nothing is stored for it.
    host_network: bool | None = None
    memory_rss_bytes: Bytes | None = None
    memory_cache_bytes: Bytes | None = None
    fs_used_bytes: Bytes | None = None
    disk_read_ops: Count | None = None
    disk_write_ops: Count | None = None


class IngestSourceStatus(_Strict):
    ok: bool
    seconds: Float | None = None
    error: Text | None = None


class IngestCollectorInfo(_Strict):
    version: Annotated[str, Field(max_length=64)] | None = None
    cgroup_version: Literal[1, 2] | None = None
    cgroup_driver: Literal["cgroupfs", "systemd"] | None = None
    cycle_cpu_seconds: Float | None = None
    sources: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=64)], IngestSourceStatus], Field(max_length=64)
    ] | None = None


class IngestBatch(_Strict):
    node: rules.NodeName
    # The collector's CLUSTER_NAME; absent: the token's cluster, else the node's, else the
    # server's CLUSTER_NAME (metrics/clusters.py).
    cluster: rules.Subdomain | None = None
    # End of the interval; stored rows carry its start (time - interval_seconds).
    time: Annotated[datetime, Field(strict=False)]
    interval_seconds: Interval
    node_usage: IngestNodeUsage
    pods: Annotated[list[IngestPod], Field(max_length=MAX_PODS)]
    collector: IngestCollectorInfo | None = None
    warnings: Annotated[list[Text], Field(max_length=MAX_WARNINGS)] | None = None
    # GPUs of the node, one per device (metrics/ingest/gpu_schema.py).
    gpus: Annotated[list[IngestGpu], Field(max_length=MAX_GPUS)] | None = None

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        # Lax datetime parsing would also take numbers (UNIX times); the contract says RFC 3339.
        if not isinstance(value, str) or not _RFC3339_SEPARATOR.match(value):
            raise ValueError("Expected an RFC 3339 date-time such as 2026-11-22T22:40:10Z")
        return value

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("The time needs an offset, e.g. Z or +00:00")
        return value


class BatchInvalid(Exception):
    """Raised with `errors`: {field path: [messages]}, the body of the 400 answer."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


_uid = attrgetter("uid")
_name = attrgetter("name")

# Models whose dict-valued fields have free keys: those keys are shown quoted in error paths.
_MAPPING_FIELDS = {"labels", "sources"}

_MESSAGES = {
    "extra_forbidden": "Unknown field.",
    "missing": "This field is required (use null for no data).",
    "json_invalid": "Malformed JSON: {error}.",
    "model_type": "Expected a JSON object.",
    "model_attributes_type": "Expected a JSON object.",
    "dict_type": "Expected a JSON object.",
    "list_type": "Expected a JSON array.",
    "finite_number": "Expected a finite number (NaN and infinity are not allowed).",
    "int_type": "Expected an integer.",
    "float_type": "Expected a number.",
    "string_type": "Expected a string.",
    "bool_type": "Expected true or false.",
    "timezone_aware": "The time needs an offset, e.g. Z or +00:00.",
}


def error_path(loc: tuple[int | str, ...]) -> str:
    """('pods', 3, 'containers', 0, 'foo') -> 'pods[3].containers[0].foo'."""
    path = ""
    previous: int | str | None = None
    for part in loc:
        if part == "[key]":
            path += "(key)"
        elif isinstance(part, int):
            path += f"[{part}]"
        elif previous in _MAPPING_FIELDS:
            path += f"[{_quote(part)}]"
        else:
            path += f".{part}" if path else part
        previous = part
    return path or "body"


def _quote(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _message(error: Any) -> str:
    if error["type"] == "string_pattern_mismatch":
        named = rules.PATTERN_MESSAGES.get(error.get("ctx", {}).get("pattern"))
        if named:
            return named
    template = _MESSAGES.get(error["type"])
    if template is not None:
        try:
            return template.format(**error.get("ctx", {}))
        except (KeyError, IndexError):
            return template
    message: str = error["msg"]
    message = message.removeprefix("Value error, ")
    return message if message.endswith(".") else message + "."


def errors_from(exc: ValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        errors.setdefault(error_path(error["loc"]), []).append(_message(error))
    return errors


def check_batch(batch: IngestBatch, now: datetime, raw_retention: timedelta) -> dict[str, list[str]]:
    """Rules pydantic cannot express per field: the time window and unique pods and containers."""
    errors: dict[str, list[str]] = {}
    if batch.time > now + MAX_FUTURE:
        errors["time"] = [
            f"The time is more than {int(MAX_FUTURE.total_seconds() // 60)} minutes ahead of the "
            f"server's clock ({now.isoformat()}); check the node's clock."
        ]
    elif batch.time < now - raw_retention:
        errors["time"] = [
            f"The time is older than the raw retention ({raw_retention.days} days); it would be "
            "deleted at once."
        ]
    pods = batch.pods
    # Fast path (every batch): sets; the loop below only runs to name the duplicates.
    if len(set(map(_uid, pods))) == len(pods) and all(
        len(set(map(_name, pod.containers))) == len(pod.containers) for pod in pods
    ):
        return errors
    seen_uids: dict[str, int] = {}
    for i, pod in enumerate(pods):
        first = seen_uids.setdefault(pod.uid, i)
        if first != i:
            errors[f"pods[{i}].uid"] = [f"Duplicate pod uid; pods[{first}] has the same uid."]
        names: dict[str, int] = {}
        for j, container in enumerate(pod.containers):
            first_c = names.setdefault(container.name, j)
            if first_c != j:
                errors[f"pods[{i}].containers[{j}].name"] = [
                    f"Duplicate container name; containers[{first_c}] has the same name."
                ]
    return errors


def serving_errors(batch: IngestBatch) -> dict[str, list[str]]:
    """A `serving` block belongs to a pod whose model_server is given."""
    return {
        f"pods[{i}].serving": ["Needs model_server (vllm or sglang) on the pod."]
        for i, pod in enumerate(batch.pods)
        if pod.serving is not None and pod.model_server is None
    }


def nul_errors(value: Any, loc: tuple[int | str, ...] = ()) -> dict[str, list[str]]:
    """Paths of strings (or object keys) containing NUL, which PostgreSQL text and jsonb refuse."""
    errors: dict[str, list[str]] = {}
    if isinstance(value, str):
        if "\x00" in value:
            errors[error_path(loc)] = ["Must not contain NUL (\\u0000)."]
    elif isinstance(value, list):
        for i, item in enumerate(value):
            errors.update(nul_errors(item, (*loc, i)))
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                errors[error_path((*loc, key, "[key]"))] = ["Must not contain NUL (\\u0000)."]
            errors.update(nul_errors(item, (*loc, key)))
    return errors


# Physical bounds of every number (metrics/ingest/rules.py), per model.
_NODE_BOUNDS = rules.Bounds(IngestNodeUsage)
_POD_BOUNDS = rules.Bounds(IngestPod)
_CONTAINER_BOUNDS = rules.Bounds(IngestContainer)
_SERVING_BOUNDS = rules.Bounds(IngestServing)


def parse_batch(body: bytes, now: datetime, raw_retention: timedelta) -> IngestBatch:
    """Validate a request body; raises BatchInvalid naming every bad field."""
    try:
        batch = IngestBatch.model_validate_json(body)
    except ValidationError as exc:
        raise BatchInvalid(errors_from(exc)) from None
    # Parsers keep the last of two equal keys; a body must not say two things (duplicates.py).
    errors = duplicates.duplicate_key_errors(body, batch)
    if errors:
        raise BatchInvalid(errors)
    # JSON can carry NUL only as an escape; look closer only when the body has one.
    if b"\\u0000" in body:
        errors = nul_errors(from_json(body))
        if errors:
            raise BatchInvalid(errors)
    errors = check_batch(batch, now, raw_retention) | check_gpus(batch.gpus) | serving_errors(batch)
    errors.update(rules.bound_errors(batch, _NODE_BOUNDS, _POD_BOUNDS, _CONTAINER_BOUNDS, _SERVING_BOUNDS))
    if errors:
        raise BatchInvalid(errors)
    return batch
