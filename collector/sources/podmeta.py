"""Pod metadata: name, namespace, owner, Deployment, QoS, labels, container names and images,
and from the PodList sources also the pod's state and spec: phase, readiness, CPU and memory
requests, and each container's state, waiting reason, last termination and requests; and for
model-server discovery the pod IP and each container's command, args and declared ports.

Sources, in order (`--metadata auto`):
1. the API server: one list of this node's pods (fieldSelector=spec.nodeName=<node>,
   resourceVersion=0 so the API server answers from its watch cache), kept in memory and
   re-listed every few minutes, or sooner when a pod uid shows up in the cgroups that the cache
   does not know (rate-limited). Never one request per pod per cycle.
2. the kubelet's /pods (same PodList format), when a kubelet URL is configured.
3. offline: /var/log/pods/<namespace>_<pod>_<uid>/<container>/ directory names, plus
   /var/log/containers/<pod>_<namespace>_<container>-<id>.log links that map container ids to
   names (the kubelet makes no such link for the sandbox).
A source that fails keeps serving its last good list; the failure is logged once.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from collector.paths import Roots

log = logging.getLogger("collector.podmeta")

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
RELIST_SECONDS = 300.0
MISS_RELIST_SECONDS = 30.0  # at most one early re-list per this many seconds for unknown uids
PODLOGS_RESCAN_SECONDS = 30.0
HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ContainerSpec:
    """What a model-server check needs of a container's spec (collector/sources/modelserver.py)."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ports: tuple[tuple[str, int], ...] = ()  # declared TCP containerPorts: (port name, number)


@dataclass
class PodMeta:
    uid: str
    name: str
    namespace: str
    owner_kind: str | None = None
    owner_name: str | None = None
    deployment: str | None = None
    qos: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    containers: dict[str, tuple[str, str]] = field(default_factory=dict)  # bare id -> (name, image)
    container_names: list[str] = field(default_factory=list)
    host_network: bool | None = None
    # State and spec (PodList sources only; None = unknown). As fresh as the last list: a
    # restarted container re-lists early (see Metadata.refresh), a phase change may wait a re-list.
    phase: str | None = None
    ready: bool | None = None
    cpu_request_cores: float | None = None
    memory_request_bytes: int | None = None
    container_states: dict[str, "ContainerState"] = field(default_factory=dict)  # by name
    # For model-server discovery: status.podIP and the regular containers' specs.
    pod_ip: str | None = None
    specs: tuple["ContainerSpec", ...] = ()


@dataclass
class ContainerState:
    ready: bool | None = None
    state: str | None = None  # running / waiting / terminated
    state_reason: str | None = None  # e.g. CrashLoopBackOff, ImagePullBackOff, Completed
    last_termination_reason: str | None = None  # e.g. OOMKilled, Error
    last_termination_time: str | None = None  # RFC 3339, as the API gives it
    cpu_request_cores: float | None = None
    memory_request_bytes: int | None = None


PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
_SUFFIXES = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}


def parse_quantity(value: Any) -> float | None:
    """A Kubernetes quantity ('250m', '1.5', '64Mi', '1e3', '2G') -> a number; None if malformed."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, scale = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, scale = text, 1.0
    try:
        parsed = float(number) * scale
    except ValueError:
        return None
    return parsed if parsed >= 0 and parsed == parsed and parsed != float("inf") else None


def _requests(container: dict[str, Any]) -> tuple[float | None, int | None]:
    requests = (container.get("resources") or {}).get("requests") or {}
    cpu = parse_quantity(requests.get("cpu"))
    memory = parse_quantity(requests.get("memory"))
    return cpu, (int(memory) if memory is not None else None)


def _sum(values: list[Any]) -> Any:
    # Like the pod cgroup's limits, the pod's request is the sum over its app containers; a
    # container without a request asks for nothing, and no request at all is unknown (None).
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _round(cores: float | None) -> float | None:
    return round(cores, 6) if cores is not None else None  # 0.1 + 0.2 is not 0.3 in floats


def _container_state(cs: dict[str, Any], requests: tuple[float | None, int | None]) -> ContainerState:
    state = cs.get("state") or {}
    kind = next((k for k in ("running", "waiting", "terminated") if k in state), None)
    reason = (state.get(kind) or {}).get("reason") if kind else None
    last = (cs.get("lastState") or {}).get("terminated") or {}
    ready = cs.get("ready")
    return ContainerState(
        ready=ready if isinstance(ready, bool) else None,
        state=kind,
        state_reason=str(reason)[:128] if reason else None,
        last_termination_reason=str(last["reason"])[:128] if last.get("reason") else None,
        last_termination_time=last.get("finishedAt") or None,
        cpu_request_cores=requests[0],
        memory_request_bytes=requests[1],
    )


def _pod_ready(status: dict[str, Any]) -> bool | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return {"True": True, "False": False}.get(condition.get("status"))
    return None


def bare_id(container_id: str) -> str:
    """'containerd://abc…' -> 'abc…' (the id in the cgroup path)."""
    return container_id.rsplit("://", 1)[-1]


def deployment_from_replicaset(rs_name: str, labels: dict[str, str]) -> str | None:
    """A ReplicaSet made by a Deployment is named <deployment>-<pod-template-hash>."""
    pod_hash = labels.get("pod-template-hash")
    if pod_hash and rs_name.endswith("-" + pod_hash):
        return rs_name[: -len(pod_hash) - 1]
    return None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def parse_container_specs(spec: dict[str, Any]) -> tuple[ContainerSpec, ...]:
    """Image, command, args and declared TCP ports of the pod's regular containers."""
    specs = []
    for c in spec.get("containers") or []:
        ports = tuple(
            (str(p.get("name") or ""), int(p["containerPort"]))
            for p in c.get("ports") or []
            if isinstance(p.get("containerPort"), int) and (p.get("protocol") or "TCP") == "TCP"
        )
        specs.append(ContainerSpec(
            name=str(c.get("name") or ""), image=str(c.get("image") or ""),
            command=_strings(c.get("command")), args=_strings(c.get("args")), ports=ports,
        ))
    return tuple(specs)


def parse_pod(item: dict[str, Any]) -> PodMeta | None:
    md = item.get("metadata") or {}
    uid = md.get("uid")
    if not uid:
        return None
    labels = {str(k): str(v) for k, v in (md.get("labels") or {}).items()}
    owner_kind = owner_name = deployment = None
    for ref in md.get("ownerReferences") or []:
        if ref.get("controller"):
            owner_kind, owner_name = ref.get("kind"), ref.get("name")
            break
    if owner_kind == "ReplicaSet" and owner_name:
        deployment = deployment_from_replicaset(owner_name, labels)
    spec = item.get("spec") or {}
    status = item.get("status") or {}
    images = {c.get("name"): c.get("image", "") for key in ("initContainers", "containers")
              for c in spec.get(key) or []}
    containers: dict[str, tuple[str, str]] = {}
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            cid = cs.get("containerID")
            if cid:
                name = cs.get("name", "")
                containers[bare_id(cid)] = (name, images.get(name) or cs.get("image", ""))
            last = ((cs.get("lastState") or {}).get("terminated") or {}).get("containerID")
            if last:  # the previous instance of a restarted container may still have a cgroup
                containers.setdefault(bare_id(last), (cs.get("name", ""), images.get(cs.get("name")) or ""))
    names = [c.get("name") for key in ("initContainers", "containers") for c in spec.get(key) or []]
    requests = {c.get("name"): _requests(c) for c in spec.get("containers") or []}
    states = {
        cs.get("name", ""): _container_state(cs, requests.get(cs.get("name"), (None, None)))
        for key in ("initContainerStatuses", "containerStatuses") for cs in status.get(key) or []
    }
    for name, request in requests.items():  # not started yet: requests known, state not
        if name and name not in states:
            states[name] = ContainerState(cpu_request_cores=request[0], memory_request_bytes=request[1])
    phase = status.get("phase")
    return PodMeta(
        uid=uid, name=md.get("name") or uid, namespace=md.get("namespace") or "default",
        owner_kind=owner_kind, owner_name=owner_name, deployment=deployment,
        qos=status.get("qosClass") or None, labels=labels, containers=containers,
        container_names=[n for n in names if n], host_network=bool(spec.get("hostNetwork")),
        phase=phase if phase in PHASES else None, ready=_pod_ready(status),
        cpu_request_cores=_round(_sum([r[0] for r in requests.values()])),
        memory_request_bytes=_sum([r[1] for r in requests.values()]),
        container_states=states,
        pod_ip=status.get("podIP") or None, specs=parse_container_specs(spec),
    )


def parse_pod_list(text: str | bytes) -> dict[str, PodMeta]:
    data = json.loads(text)
    pods: dict[str, PodMeta] = {}
    for item in data.get("items") or []:
        meta = parse_pod(item)
        if meta is not None:
            pods[meta.uid] = meta
    return pods


class _ListSource:
    """A PodList fetched over HTTPS and cached; re-listed on a timer or when a uid is missing."""

    name = "podlist"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.pods: dict[str, PodMeta] = {}
        self.stale: set[str] = set()  # uids whose entry lacks a container seen in the cgroups
        self.clock = clock
        self._listed_at: float | None = None
        self._tried_at = -1e18
        self._error: str | None = None

    def fetch(self) -> bytes:
        raise NotImplementedError

    def refresh(self, missing: bool) -> None:
        now = self.clock()
        due = self._listed_at is None or now - self._listed_at >= RELIST_SECONDS
        if not due and not (missing and now - self._tried_at >= MISS_RELIST_SECONDS):
            return
        if now - self._tried_at < MISS_RELIST_SECONDS and self._error is not None:
            return  # failing: retry on the slow timer only
        self._tried_at = now
        try:
            self.pods = parse_pod_list(self.fetch())
        except Exception as exc:  # network, TLS, HTTP status, JSON: keep the last good list
            error = f"{type(exc).__name__}: {exc}"[:300]
            if error != self._error:
                log.warning("pod metadata from %s failed: %s", self.name, error)
            self._error = error
            return
        if self._error is not None:
            log.info("pod metadata from %s works again (%d pods)", self.name, len(self.pods))
        self._error = None
        self._listed_at = now

    @property
    def error(self) -> str | None:
        return self._error


def _read_token(path: str) -> str:
    # Bound service-account tokens rotate (about hourly): read the file for every request.
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def _get(url: str, token_path: str | None, context: ssl.SSLContext | None) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token_path and os.path.exists(token_path):
        request.add_header("Authorization", f"Bearer {_read_token(token_path)}")
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT, context=context) as response:
        return response.read()


def _tls_context(ca_path: str | None, insecure: bool = False) -> ssl.SSLContext:
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_path and os.path.exists(ca_path):
        return ssl.create_default_context(cafile=ca_path)
    return ssl.create_default_context()


class ApiServerSource(_ListSource):
    name = "apiserver"

    def __init__(self, node: str, base_url: str | None = None, token_path: str | None = None,
                 ca_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if base_url is None:
            host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            host = f"[{host}]" if ":" in host else host
            base_url = f"https://{host}:{port}"
        self.base_url = base_url.rstrip("/")
        self.token_path = token_path if token_path is not None else f"{SERVICE_ACCOUNT}/token"
        ca = ca_path if ca_path is not None else f"{SERVICE_ACCOUNT}/ca.crt"
        self.context = _tls_context(ca) if self.base_url.startswith("https:") else None
        query = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={node}",
                                        "resourceVersion": "0"})
        self.url = f"{self.base_url}/api/v1/pods?{query}"
        self._rs_owner: dict[tuple[str, str], str | None] = {}
        self._rs_forbidden = False

    @staticmethod
    def available() -> bool:
        return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))

    def fetch(self) -> bytes:
        return _get(self.url, self.token_path, self.context)

    def refresh(self, missing: bool) -> None:
        before = self._listed_at
        super().refresh(missing)
        if self._listed_at != before:
            self._resolve_deployments()

    def _resolve_deployments(self) -> None:
        """For ReplicaSets whose name does not end in the pod's template hash, ask the API for the
        ReplicaSet's own owner (once per ReplicaSet; given up for good on 401/403)."""
        for meta in self.pods.values():
            if meta.owner_kind != "ReplicaSet" or meta.deployment or not meta.owner_name:
                continue
            key = (meta.namespace, meta.owner_name)
            if key not in self._rs_owner and not self._rs_forbidden:
                self._rs_owner[key] = self._replicaset_owner(*key)
            meta.deployment = self._rs_owner.get(key)

    def _replicaset_owner(self, namespace: str, name: str) -> str | None:
        url = (f"{self.base_url}/apis/apps/v1/namespaces/{urllib.parse.quote(namespace)}"
               f"/replicasets/{urllib.parse.quote(name)}")
        try:
            rs = json.loads(_get(url, self.token_path, self.context))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                log.info("no permission to read ReplicaSets (%d); Deployments come from the "
                         "pod-template-hash label only", exc.code)
                self._rs_forbidden = True
            return None
        except Exception:
            return None
        for ref in (rs.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Deployment":
                return ref.get("name")
        return None


class KubeletSource(_ListSource):
    name = "kubelet"

    def __init__(self, base_url: str, insecure: bool = False, token_path: str | None = None,
                 ca_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = base_url.rstrip("/") + "/pods"
        self.token_path = token_path if token_path is not None else f"{SERVICE_ACCOUNT}/token"
        ca = ca_path if ca_path is not None else f"{SERVICE_ACCOUNT}/ca.crt"
        self.context = _tls_context(ca, insecure) if self.url.startswith("https:") else None

    def fetch(self) -> bytes:
        return _get(self.url, self.token_path, self.context)


def parse_pod_log_dirs(pod_dirs: dict[str, list[str]], container_links: list[str],
                       ) -> dict[str, PodMeta]:
    """{'<ns>_<pod>_<uid>': [container names]} + ['<pod>_<ns>_<container>-<id>.log'] -> metadata.

    Namespaces, pod names and container names cannot contain '_', so the splits are unambiguous.
    """
    pods: dict[str, PodMeta] = {}
    by_name: dict[tuple[str, str], PodMeta] = {}
    for dirname, containers in pod_dirs.items():
        parts = dirname.split("_")
        if len(parts) != 3:
            continue
        namespace, name, uid = parts
        meta = PodMeta(uid=uid, name=name, namespace=namespace, container_names=sorted(containers))
        pods[uid] = meta
        by_name[(namespace, name)] = meta
    for link in container_links:
        if not link.endswith(".log"):
            continue
        parts = link[:-4].split("_")
        if len(parts) != 3 or len(parts[2]) < 66 or parts[2][-65] != "-":
            continue
        pod, namespace, rest = parts
        container, cid = rest[:-65], rest[-64:]
        owner = by_name.get((namespace, pod))
        if owner is not None:
            owner.containers[cid] = (container, "")
    return pods


class PodLogsSource:
    name = "podlogs"

    def __init__(self, roots: Roots, clock: Callable[[], float] = time.monotonic) -> None:
        self.roots = roots
        self.clock = clock
        self.pods: dict[str, PodMeta] = {}
        self.stale: set[str] = set()
        self._scanned_at = -1e18
        self.error: str | None = None

    def refresh(self, missing: bool) -> None:
        now = self.clock()
        if now - self._scanned_at < (PODLOGS_RESCAN_SECONDS if missing else RELIST_SECONDS):
            return
        self._scanned_at = now
        pod_dirs: dict[str, list[str]] = {}
        try:
            with os.scandir(self.roots.pod_log_dir) as it:
                for entry in it:
                    if entry.is_dir():
                        try:
                            pod_dirs[entry.name] = [c for c in os.listdir(entry.path)
                                                    if os.path.isdir(os.path.join(entry.path, c))]
                        except OSError:
                            continue
        except FileNotFoundError:  # not a kubelet node (or not mounted): simply no pods here
            self.pods, self.error = {}, None
            return
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return
        try:
            links = os.listdir(self.roots.containers_log_dir)
        except OSError:
            links = []
        self.pods = parse_pod_log_dirs(pod_dirs, links)
        self.error = None


class Metadata:
    """Looks a pod uid up in the configured sources, first source that knows it wins."""

    def __init__(self, sources: list[Any]) -> None:
        self.sources = sources

    @classmethod
    def from_config(cls, config: Any, roots: Roots) -> "Metadata":
        mode = config.metadata
        sources: list[Any] = []
        if mode in ("auto", "apiserver") and (mode == "apiserver" or ApiServerSource.available()):
            sources.append(ApiServerSource(config.node))
        if mode in ("auto", "kubelet") and config.kubelet_url:
            sources.append(KubeletSource(config.kubelet_url,
                                         insecure=config.kubelet_insecure_tls == "true"))
        if mode in ("auto", "podlogs"):
            sources.append(PodLogsSource(roots))
        return cls(sources)

    def refresh(self, uids: set[str], containers: dict[str, set[str]] | None = None,
                ) -> dict[str, dict[str, Any]]:
        """Refresh what is due; returns per-source status for the batch.

        `containers` (uid -> workload container ids seen in the cgroups) lets a container that
        started after the last list (a restart) trigger an early re-list, like an unknown pod.
        """
        status: dict[str, dict[str, Any]] = {}
        missing = set(uids)
        for uid, ids in (containers or {}).items():
            meta = self.get(uid)
            if meta is not None and meta.containers and not ids <= meta.containers.keys():
                missing.add(uid)
                for source in self.sources:
                    if uid in source.pods:
                        source.stale.add(uid)
        for source in self.sources:
            start = time.perf_counter()
            # Ask early only for pods that no earlier source knows and this one does not either.
            source.refresh(bool(missing - source.pods.keys() or source.stale & missing))
            source.stale.clear()
            missing -= source.pods.keys()
            status[f"metadata_{source.name}"] = {
                "ok": source.error is None, "seconds": round(time.perf_counter() - start, 6),
                "error": source.error,
            }
        return status

    def get(self, uid: str) -> PodMeta | None:
        for source in self.sources:
            meta = source.pods.get(uid)
            if meta is not None:
                return meta
        return None
