"""vLLM and SGLang servers among this node's pods: which pods, which model, and how they serve.

A pod is a candidate from its containers' images (vllm/vllm-openai, lmsysorg/sglang), their
command and args (`vllm serve`, `vllm.entrypoints.openai.api_server`, `sglang.launch_server`) or
its labels (llm-d's `llm-d.ai/inferenceServing`, KServe's `serving.kserve.io/inferenceservice`).
It is confirmed by its metrics endpoint, http://<status.podIP>:<port>/metrics, answering with
`vllm:` or `sglang:` samples. The port: the declared containerPort of the server's container, else
the `--port` in its args, else the server's default (8000 for vLLM, 30000 for SGLang).

Scrapes run in a thread pool, each bounded by SCRAPE_TIMEOUT, and never hold the cycle up: they
are sent at the start of a cycle and collected at its end (waiting at most HARVEST_GRACE after
sending, which the snapshot itself usually takes longer than). A scrape not back by then is used
in the next cycle if it succeeds, or counted as a failure (timeout). One scrape per pod is in
flight at a time.

Counters and histograms become usage during the interval like CPU in delta.py: the difference of
two readings, and a counter that went down means the server restarted, so the new value is the
usage since. Latency means come from the histograms' sum and count deltas; p50 and p95 are
interpolated in the bucket deltas the way Prometheus' histogram_quantile does.
"""

from __future__ import annotations

import http.client
import logging
import math
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("collector.modelserver")

VLLM, SGLANG = "vllm", "sglang"
DEFAULT_PORTS = {VLLM: 8000, SGLANG: 30000}
SCRAPE_TIMEOUT = 2.0
HARVEST_GRACE = 0.2
MAX_BODY = 8 * 1024 * 1024
# A candidate whose endpoint answers without vllm:/sglang: samples is asked again this much later.
REPROBE_SECONDS = 300.0
# Readings further apart than this are not turned into usage (the server refuses such intervals).
MAX_INTERVAL = 3600.0
WORKERS = 8

SERVING_LABELS = ("llm-d.ai/inferenceServing", "serving.kserve.io/inferenceservice")
_VLLM_IMAGE = "vllm/vllm-openai"
_SGLANG_IMAGE = "lmsysorg/sglang"
_VLLM_COMMAND = re.compile(r"(?:^|[\s/])vllm\s+serve\b|vllm\.entrypoints\.openai\.api_server")
_SGLANG_COMMAND = re.compile(r"sglang\.launch_server")
_PORT_ARG = re.compile(r"--port(?:=|\s+)(\d{1,5})\b")

# Sample names per server kind -> our field. Where a metric was renamed, the current name comes
# first and wins when a server emits both (vLLM 0.11 still emits the deprecated ones).
GAUGES: dict[str, dict[str, tuple[str, ...]]] = {
    VLLM: {
        "requests_running": ("vllm:num_requests_running",),
        "requests_waiting": ("vllm:num_requests_waiting",),
        "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    },
    SGLANG: {
        "requests_running": ("sglang:num_running_reqs",),
        "requests_waiting": ("sglang:num_queue_reqs",),
        "kv_cache_usage": ("sglang:token_usage",),
    },
}
COUNTERS: dict[str, dict[str, tuple[str, ...]]] = {
    VLLM: {
        "prompt_tokens": ("vllm:prompt_tokens_total",),
        "generation_tokens": ("vllm:generation_tokens_total",),
        "requests_succeeded": ("vllm:request_success_total",),
        "preemptions": ("vllm:num_preemptions_total",),
    },
    SGLANG: {
        "prompt_tokens": ("sglang:prompt_tokens_total",),
        "generation_tokens": ("sglang:generation_tokens_total",),
        "requests_succeeded": ("sglang:num_requests_total",),
    },
}
HISTOGRAMS: dict[str, dict[str, tuple[str, ...]]] = {
    VLLM: {
        "ttft": ("vllm:time_to_first_token_seconds",),
        "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        "e2e": ("vllm:e2e_request_latency_seconds",),
    },
    SGLANG: {
        "ttft": ("sglang:time_to_first_token_seconds",),
        "itl": ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
        "e2e": ("sglang:e2e_request_latency_seconds",),
    },
}


def _wanted_prefixes() -> tuple[str, ...]:
    names: set[str] = set()
    for table in (GAUGES, COUNTERS, HISTOGRAMS):
        for fields in table.values():
            for candidates in fields.values():
                names.update(candidates)
    return tuple(sorted(names))


# Lines worth reading: the samples of the metrics we use.
_WANTED = _wanted_prefixes()


# --- which pods ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    uid: str
    namespace: str
    name: str
    kind: str | None  # from image or command; None when only a label says it serves a model
    ip: str
    ports: tuple[int, ...]  # to try, in order, until one answers with vllm: or sglang: samples


def container_kind(image: str, command: Iterable[str], args: Iterable[str]) -> str | None:
    image = image.lower()
    if _VLLM_IMAGE in image:
        return VLLM
    if _SGLANG_IMAGE in image:
        return SGLANG
    words = " ".join((*command, *args))
    if _VLLM_COMMAND.search(words):
        return VLLM
    if _SGLANG_COMMAND.search(words):
        return SGLANG
    return None


def _port_arg(command: Iterable[str], args: Iterable[str]) -> int | None:
    match = _PORT_ARG.search(" ".join((*command, *args)))
    return int(match.group(1)) if match else None


def classify(meta: Any) -> Candidate | None:
    """The pod's metrics endpoint(s) to try, or None when nothing says it serves a model."""
    ip = getattr(meta, "pod_ip", None)
    specs = getattr(meta, "specs", ())
    if not ip or not specs:
        return None
    labelled = any(key in meta.labels for key in SERVING_LABELS)
    ports: list[int] = []
    kind = None
    for spec in specs:
        this = container_kind(spec.image, spec.command, spec.args)
        if this is None:
            continue
        kind = kind or this
        flag = _port_arg(spec.command, spec.args)
        declared = [port for _, port in spec.ports]
        # The port the server listens on, if declared; else the first declared one.
        ports += [flag] if flag is not None and flag in declared else declared
        ports += [p for p in (flag, DEFAULT_PORTS[this]) if p is not None]
    if kind is None:
        if not labelled:
            return None
        ports = [port for spec in specs for _, port in spec.ports] + [DEFAULT_PORTS[VLLM], DEFAULT_PORTS[SGLANG]]
    unique = tuple(dict.fromkeys(ports))
    return Candidate(meta.uid, meta.namespace, meta.name, kind, ip, unique)


# --- what they serve ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistogramReading:
    sum: float
    count: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last


@dataclass
class Reading:
    kind: str
    model_name: str | None
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, HistogramReading] = field(default_factory=dict)


class NotAModelServer(Exception):
    """The endpoint answered, but with no vllm: or sglang: samples."""


# name{labels} -> (sample name, labels), from prometheus_client's parser. A series' name and
# labels do not change between scrapes, only its value: parsing them once keeps a scrape of a
# busy server's ~100 wanted lines near 0.1 ms of CPU instead of ~1.6 ms.
_SERIES_CACHE: dict[str, tuple[str, dict[str, str]]] = {}
_SERIES_CACHE_MAX = 20000


def _series(key: str) -> tuple[str, dict[str, str]]:
    found = _SERIES_CACHE.get(key)
    if found is None:
        sample = next(iter(next(iter(text_string_to_metric_families(key + " 0\n"))).samples))
        found = (sample.name, dict(sample.labels))
        if len(_SERIES_CACHE) >= _SERIES_CACHE_MAX:
            _SERIES_CACHE.clear()
        _SERIES_CACHE[key] = found
    return found


def parse_samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)] for the metrics we read; other lines are skipped."""
    values: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line.startswith(_WANTED):
            continue
        # The series is everything up to its closing brace (label values may hold spaces), or
        # up to the first space; then the value and an optional timestamp.
        end = line.rfind("}") + 1 or line.find(" ")
        if end <= 0:
            continue
        rest = line[end:].split()
        if not rest:
            raise ValueError(f"no value in {line[:200]!r}")
        name, labels = _series(line[:end])
        values.setdefault(name, []).append((labels, float(rest[0])))
    return values


def parse_metrics(text: str) -> Reading:
    """Prometheus text from a vLLM or SGLang /metrics -> one Reading.

    Several label sets of one metric (engines, finished_reason, data-parallel ranks) are summed,
    except KV cache usage, a fraction per engine, which is averaged.
    """
    values = parse_samples(text)
    kind = VLLM if any(n.startswith("vllm:") for n in values) else SGLANG if values else None
    if kind is None:
        raise NotAModelServer("no vllm: or sglang: metrics at this endpoint")
    model = None
    for samples in values.values():
        for labels, _ in samples:
            model = labels.get("model_name") or labels.get("name")
            if model:
                break
        if model:
            break
    reading = Reading(kind, model or None)

    def first(names: tuple[str, ...], suffix: str = "") -> list[tuple[dict[str, str], float]] | None:
        for name in names:
            if name + suffix in values:
                return values[name + suffix]
        return None

    for key, names in GAUGES[kind].items():
        gauge = first(names)
        if gauge:
            total = math.fsum(v for _, v in gauge)
            reading.gauges[key] = total / len(gauge) if key == "kv_cache_usage" else total
    for key, names in COUNTERS[kind].items():
        counter = first(names)
        if counter:
            reading.counters[key] = math.fsum(v for _, v in counter)
    for key, names in HISTOGRAMS[kind].items():
        name = next((n for n in names if n + "_count" in values), None)
        if name is None:
            continue
        buckets: dict[float, float] = {}
        for labels, value in values.get(name + "_bucket", []):
            bound = float(labels.get("le", "nan"))
            if not math.isnan(bound):
                buckets[bound] = buckets.get(bound, 0.0) + value
        reading.histograms[key] = HistogramReading(
            math.fsum(v for _, v in values.get(name + "_sum", [])),
            math.fsum(v for _, v in values[name + "_count"]),
            tuple(sorted(buckets.items())),
        )
    return reading


def histogram_quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Prometheus' histogram_quantile on cumulative (bound, count) pairs: linear interpolation
    inside the bucket holding the rank; the highest finite bound when the rank is in +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_bound


def _went_down(cur: Reading, old: Reading) -> bool:
    for key, value in cur.counters.items():
        if key in old.counters and value < old.counters[key]:
            return True
    for key, h in cur.histograms.items():
        before = old.histograms.get(key)
        if before is not None and (h.count < before.count or h.sum < before.sum):
            return True
    return False


def serving_usage(old: Reading, cur: Reading) -> dict[str, Any]:
    """The `serving` block of the ingest contract for the interval between two readings."""
    restarted = _went_down(cur, old) or old.kind != cur.kind
    out: dict[str, Any] = {}
    for key in ("requests_running", "requests_waiting"):
        if key in cur.gauges:
            out[key] = max(cur.gauges[key], 0.0)
    if "kv_cache_usage" in cur.gauges:
        out["kv_cache_usage_percent"] = min(max(cur.gauges["kv_cache_usage"] * 100.0, 0.0), 100.0)
    for key, value in cur.counters.items():
        if restarted:
            delta = value
        elif key in old.counters:
            delta = value - old.counters[key]
        else:
            continue  # a counter that just appeared: no base to count from yet
        out[key] = int(round(max(delta, 0.0)))
    for key, h in cur.histograms.items():
        before = None if restarted else old.histograms.get(key)
        if before is None and not restarted:
            continue
        if before is not None and tuple(b for b, _ in before.buckets) != tuple(b for b, _ in h.buckets):
            continue  # bucket layout changed without a restart: nothing comparable
        base = dict(before.buckets) if before is not None else {}
        deltas = tuple((b, c - base.get(b, 0.0)) for b, c in h.buckets)
        count = h.count - (before.count if before is not None else 0.0)
        total = h.sum - (before.sum if before is not None else 0.0)
        out[f"{key}_count"] = int(round(max(count, 0.0)))
        out[f"{key}_seconds_sum"] = max(total, 0.0)
        if count > 0:
            p50, p95 = histogram_quantile(0.5, deltas), histogram_quantile(0.95, deltas)
            if p50 is not None:
                out[f"{key}_p50_seconds"] = p50
            if p95 is not None:
                out[f"{key}_p95_seconds"] = p95
    if restarted:
        out["restarted"] = True
    return out


# --- scraping -----------------------------------------------------------------------------------


def http_get(ip: str, port: int, timeout: float = SCRAPE_TIMEOUT) -> str:
    """GET http://ip:port/metrics within `timeout` seconds in all (connect, headers, body)."""
    deadline = time.monotonic() + timeout
    host = f"[{ip}]" if ":" in ip else ip
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", "/metrics", headers={"Accept": "text/plain", "Host": f"{host}:{port}"})
        response = conn.getresponse()
        if response.status != 200:
            raise OSError(f"HTTP {response.status} from /metrics")
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete answer within {timeout:g} s")
            chunk = response.read1(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BODY:
                raise OSError(f"answer larger than {MAX_BODY} bytes")
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")
    finally:
        conn.close()


def _scrape(fetch: Callable[[str, int], str], ip: str, port: int) -> tuple[Reading | None, str | None]:
    """(reading, None), (None, 'not a model server') or raises."""
    try:
        return parse_metrics(fetch(ip, port)), None
    except NotAModelServer as exc:
        return None, str(exc)


@dataclass
class _Target:
    candidate: Candidate
    port_index: int = 0
    confirmed_port: int | None = None
    kind: str | None = None
    model_name: str | None = None
    future: Future | None = None
    submitted_tick: float = 0.0
    submitted_at: float = 0.0
    last: Reading | None = None
    last_tick: float = 0.0
    not_before: float = -1e18  # monotonic time of the next probe of an unconfirmed endpoint
    error: str | None = None
    serving: dict[str, Any] | None = None  # usage of the newest interval, not yet reported
    failed: str | None = None  # a failure in this cycle, to report even if a retry then worked

    @property
    def port(self) -> int:
        if self.confirmed_port is not None:
            return self.confirmed_port
        ports = self.candidate.ports
        return ports[self.port_index % len(ports)]


class ModelServers:
    """Per-pod scrape state across cycles: `submit()` at the start, `harvest()` at the end."""

    def __init__(self, fetch: Callable[[str, int], str] = http_get, workers: int = WORKERS,
                 grace: float = HARVEST_GRACE, clock: Callable[[], float] = time.monotonic) -> None:
        self.fetch = fetch
        self.grace = grace
        self.clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self.targets: dict[str, _Target] = {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def submit(self, tick: float, pods: Iterable[Any]) -> None:
        """Send a scrape to each candidate that has none in flight."""
        seen = set()
        now = self.clock()
        for meta in pods:
            candidate = classify(meta)
            if candidate is None:
                continue
            seen.add(candidate.uid)
            target = self.targets.get(candidate.uid)
            if target is None or target.candidate != candidate:
                target = self.targets[candidate.uid] = _Target(candidate)
            future = target.future
            if future is not None and future.done() and future.exception() is not None:
                self._collect(target, tick)  # a failed scrape: report it and ask again now
            if target.future is not None or now < target.not_before:
                continue  # in flight, or a late answer the harvest of this cycle will use
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="scrape")
            target.future = self._pool.submit(_scrape, self.fetch, candidate.ip, target.port)
            target.submitted_tick, target.submitted_at = tick, now
        for uid in set(self.targets) - seen:  # pod gone (or no longer a candidate)
            del self.targets[uid]

    def harvest(self, tick: float) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
        """(pod uid -> fields for its batch row, source status or None when no candidates)."""
        started = self.clock()
        pending = [t.future for t in self.targets.values() if t.future is not None and not t.future.done()]
        if pending:
            sent = max(t.submitted_at for t in self.targets.values() if t.future in pending)
            wait(pending, timeout=max(0.0, sent + self.grace - self.clock()))
        fields: dict[str, dict[str, Any]] = {}
        failures: list[str] = []
        for uid, target in self.targets.items():
            self._collect(target, tick)
            error = target.error or target.failed
            target.failed = None
            if error is not None:
                failures.append(f"{target.candidate.namespace}/{target.candidate.name} "
                                f"({target.candidate.ip}:{target.port}): {error}")
            if target.kind is not None:
                row: dict[str, Any] = {"model_server": target.kind, "model_name": target.model_name}
                if target.serving is not None:
                    row["serving"], target.serving = target.serving, None
                fields[uid] = row
        if not self.targets:
            return fields, None
        error = None
        if failures:
            error = f"{len(failures)} of {len(self.targets)} endpoints failed: " + "; ".join(failures)
        # `seconds`: how long this cycle waited for answers (at most the grace).
        waited = round(self.clock() - started, 6)
        return fields, {"ok": not failures, "seconds": waited, "error": error[:1000] if error else None}

    def _collect(self, target: _Target, tick: float) -> None:
        future = target.future
        if future is None:
            return
        if not future.done():
            if self.clock() - target.submitted_at > SCRAPE_TIMEOUT + 1.0:
                self._fail(target, f"no answer within {SCRAPE_TIMEOUT:g} s")
            return
        target.future = None
        try:
            reading, not_server = future.result()
        except Exception as exc:  # refused, timed out, HTTP error, unparsable text
            self._fail(target, f"{type(exc).__name__}: {exc}"[:300])
            return
        if reading is None:
            # Answers, but not as vLLM or SGLang: try the next port later; nothing to report.
            if target.confirmed_port is None:
                target.port_index += 1
                if target.port_index % len(target.candidate.ports) == 0:
                    target.not_before = self.clock() + REPROBE_SECONDS
            self._recovered(target)
            log.debug("%s/%s: %s", target.candidate.namespace, target.candidate.name, not_server)
            return
        if target.kind is None:
            log.info("%s/%s is a %s server (%s) at %s:%d", target.candidate.namespace,
                     target.candidate.name, reading.kind, reading.model_name, target.candidate.ip, target.port)
        target.confirmed_port = target.port
        target.kind = reading.kind
        target.model_name = reading.model_name or target.model_name
        self._recovered(target)
        # The reading stands for the tick it is used in (a late one for the next cycle's).
        if target.last is not None and 0 < tick - target.last_tick <= MAX_INTERVAL:
            serving = serving_usage(target.last, reading)
            serving["interval_seconds"] = round(tick - target.last_tick, 6)
            target.serving = serving
        target.last, target.last_tick = reading, tick

    def _fail(self, target: _Target, error: str) -> None:
        if target.future is not None and not target.future.done():
            target.future.cancel()
        target.future = None
        if target.confirmed_port is None and target.candidate.kind is None:
            # Only a label said it might serve a model (a KServe predictor may be sklearn): a
            # port that does not answer is no failure of ours. Try the next; after the last,
            # ask again much later.
            log.debug("%s/%s: port %d: %s", target.candidate.namespace, target.candidate.name, target.port, error)
            target.port_index += 1
            if target.port_index % len(target.candidate.ports) == 0:
                target.not_before = self.clock() + REPROBE_SECONDS
            return
        if error != target.error:
            log.warning("model server %s/%s at %s:%d: %s", target.candidate.namespace,
                        target.candidate.name, target.candidate.ip, target.port, error)
        target.error = target.failed = error
        if target.confirmed_port is None:
            target.port_index += 1

    def _recovered(self, target: _Target) -> None:
        if target.error is not None:
            log.info("model server %s/%s answers again", target.candidate.namespace, target.candidate.name)
        target.error = None
