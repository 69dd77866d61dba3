"""Collector settings: every option is a flag and an environment variable (flag wins)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

METADATA_MODES = ("auto", "apiserver", "kubelet", "podlogs", "none")


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    default: object
    help: str
    kind: type = str
    choices: tuple[str, ...] | None = None


# One table drives argparse, the environment lookup, --help and the README.
OPTIONS: tuple[Option, ...] = (
    Option("--api-url", "KUBEMONITOR_API_URL", "http://kubemonitor-api:8000",
           "Base URL of the kubemonitor API; batches go to <url>/api/ingest/."),
    Option("--token", "KUBEMONITOR_TOKEN", "", "Ingest token (km_<prefix>_<secret>)."),
    Option("--token-file", "KUBEMONITOR_TOKEN_FILE", "",
           "File holding the ingest token; re-read when it changes (wins over --token)."),
    Option("--node-name", "NODE_NAME", "",
           "Node name reported in batches (downward API spec.nodeName); default: the hostname."),
    Option("--cluster-name", "CLUSTER_NAME", "",
           "Cluster name sent in batches (field `cluster`); empty: the server's default cluster."),
    Option("--interval", "KUBEMONITOR_INTERVAL", 10.0,
           "Seconds between samples; ticks fall on multiples of it on the wall clock.", float),
    Option("--proc-root", "KUBEMONITOR_PROC_ROOT", "/proc", "Where the host's /proc is mounted."),
    Option("--sys-root", "KUBEMONITOR_SYS_ROOT", "/sys", "Where the host's /sys is mounted."),
    Option("--pod-log-dir", "KUBEMONITOR_POD_LOG_DIR", "/var/log/pods",
           "Where the host's /var/log/pods is mounted (offline pod metadata; its sibling "
           "containers/ maps container ids to names)."),
    Option("--pod-resources-socket", "KUBEMONITOR_POD_RESOURCES_SOCKET",
           "/var/lib/kubelet/pod-resources/kubelet.sock",
           "The kubelet's pod-resources socket: which pod each GPU is allocated to (optional)."),
    Option("--spool-dir", "KUBEMONITOR_SPOOL_DIR", "/var/lib/kubemonitor/spool",
           "Directory for batches the API did not accept yet."),
    Option("--spool-max-bytes", "KUBEMONITOR_SPOOL_MAX_BYTES", 64 * 1024 * 1024,
           "Size limit of the spool; the oldest batches are dropped (and counted) beyond it.", int),
    Option("--kubelet-url", "KUBEMONITOR_KUBELET_URL", "",
           "Kubelet base URL for /pods metadata, e.g. https://$(NODE_IP):10250 (optional)."),
    Option("--kubelet-insecure-tls", "KUBEMONITOR_KUBELET_INSECURE_TLS", "false",
           "Do not verify the kubelet's serving certificate (true/false).", str,
           ("true", "false")),
    Option("--metadata", "KUBEMONITOR_METADATA", "auto",
           "Pod metadata source: auto tries apiserver, kubelet, then podlogs.", str, METADATA_MODES),
    Option("--model-servers", "KUBEMONITOR_MODEL_SERVERS", "true",
           "Find vLLM / SGLang pods and scrape their /metrics at the pod IP (true/false).", str,
           ("true", "false")),
    Option("--log-level", "LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR."),
)


@dataclass(frozen=True)
class Config:
    api_url: str = "http://kubemonitor-api:8000"
    token: str = ""
    token_file: str = ""
    node_name: str = ""
    cluster_name: str = ""
    interval: float = 10.0
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    pod_log_dir: str = "/var/log/pods"
    pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    spool_dir: str = "/var/lib/kubemonitor/spool"
    spool_max_bytes: int = 64 * 1024 * 1024
    kubelet_url: str = ""
    kubelet_insecure_tls: str = "false"
    metadata: str = "auto"
    model_servers: str = "true"
    log_level: str = "INFO"
    dry_run: bool = False
    count: int | None = None
    once: bool = False

    @property
    def node(self) -> str:
        # As the kubelet names its node: the host name in lower case (a DNS-1123 subdomain, which
        # is all the API accepts).
        return self.node_name or socket.gethostname().lower()

    @property
    def ingest_url(self) -> str:
        return self.api_url.rstrip("/") + "/api/ingest/"


def attr_name(option: Option) -> str:
    return option.flag.lstrip("-").replace("-", "_")


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Values set in the environment, converted to their types (ValueError names the variable)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for option in OPTIONS:
        raw = env.get(option.env)
        if raw is None or raw == "":
            continue
        try:
            values[attr_name(option)] = option.kind(raw)
        except ValueError:
            raise ValueError(f"{option.env}={raw!r} is not a valid {option.kind.__name__}") from None
    return values
