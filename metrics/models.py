"""Inventory (nodes, pods, containers), credentials, and the wide sample tables.

Samples are one row per node / pod / container per collection interval, one column per metric.
Each row carries what was *used during* its interval (CPU-seconds, bytes) plus the interval's
length, so every rollup is a plain sum: a namespace's CPU over any bucket is the sum of its pods'
CPU-seconds divided by the bucket length, exact whatever each node's collection interval.

`time` on a sample is the START of the interval it covers (the ingest contract sends the end;
ingest subtracts `interval_seconds`). Rollup buckets are labelled by their start too, so a sample
belongs to the bucket its interval starts in, and an interval that ends exactly on a bucket edge is
counted wholly in the bucket before that edge.

The sample tables are TimescaleDB hypertables where the database offers TimescaleDB. Every unique
index of a hypertable must include its time column, so migration 0002 replaces the `id` primary
key with `(id, time)`. Django still sees `id` as the primary key, which keeps the admin working
(it refuses models with a CompositePrimaryKey); `id` alone is unique in practice because it comes
from a sequence.

Foreign keys from samples are declared with `db_constraint=False`: a constraint would add an
index probe per inserted row on the ingest hot path, and ingest already guarantees the rows exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models


class Cluster(models.Model):
    """A Kubernetes cluster: the top of the inventory (cluster > node > pod > container).

    A single-cluster install has one, named CLUSTER_NAME, made when the first node arrives; a
    collector may name its own (CLUSTER_NAME in the collector's environment). Node names are
    unique across the clusters of one installation (the read API addresses nodes by name).
    """

    name = models.CharField(max_length=253, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def default_cluster_id() -> int:
    """The id of the CLUSTER_NAME cluster, made if missing: the cluster of a node created
    without one (the ORM default; ingest names the cluster explicitly)."""
    return Cluster.objects.get_or_create(name=settings.CLUSTER_NAME)[0].pk


class Node(models.Model):
    name = models.CharField(max_length=253, unique=True)
    # PROTECT: deleting a cluster must not silently delete its nodes and their samples.
    cluster = models.ForeignKey(
        Cluster, on_delete=models.PROTECT, related_name="nodes", default=default_cluster_id
    )
    first_seen = models.DateTimeField()
    # End of the newest interval received from this node's collector.
    last_seen = models.DateTimeField(db_index=True)
    cpu_capacity_cores = models.FloatField(null=True, blank=True)
    memory_total_bytes = models.BigIntegerField(null=True, blank=True)
    fs_capacity_bytes = models.BigIntegerField(null=True, blank=True)
    # What the collector said about itself in its newest batch: version, cgroup version and
    # driver, per-source success, warnings such as "blkio statistics unavailable".
    collector_info = models.JSONField(default=dict, blank=True)
    # Length of the newest batch's interval: the node is "not reporting" once
    # NOT_REPORTING_INTERVALS of them have passed since last_seen without a batch.
    interval_seconds = models.FloatField(null=True, blank=True)

    NOT_REPORTING_INTERVALS = 3

    class Meta:
        ordering = ["name"]

    def reporting(self, now: datetime) -> bool:
        interval = self.interval_seconds or 60.0
        return now - self.last_seen <= timedelta(seconds=interval * self.NOT_REPORTING_INTERVALS)

    def __str__(self) -> str:
        return self.name


PHASES = [(p, p) for p in ("Pending", "Running", "Succeeded", "Failed", "Unknown")]
CONTAINER_STATES = [(s, s) for s in ("running", "waiting", "terminated")]


class Pod(models.Model):
    class QoS(models.TextChoices):
        GUARANTEED = "Guaranteed"
        BURSTABLE = "Burstable"
        BEST_EFFORT = "BestEffort"
        UNKNOWN = ""

    uid = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=253)
    namespace = models.CharField(max_length=253)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="pods")
    owner_kind = models.CharField(max_length=63, blank=True, default="")
    owner_name = models.CharField(max_length=253, blank=True, default="")
    # The Deployment behind the pod's ReplicaSet; null for pods no Deployment owns.
    deployment = models.CharField(max_length=253, null=True, blank=True)
    qos = models.CharField(max_length=16, choices=QoS.choices, blank=True, default="")
    labels = models.JSONField(default=dict, blank=True)
    cpu_limit_cores = models.FloatField(null=True, blank=True)
    memory_limit_bytes = models.BigIntegerField(null=True, blank=True)
    # State and spec from the collector's pod list; null = unknown (e.g. offline metadata).
    phase = models.CharField(max_length=16, choices=PHASES, null=True, blank=True)
    ready = models.BooleanField(null=True, blank=True)
    cpu_request_cores = models.FloatField(null=True, blank=True)
    memory_request_bytes = models.BigIntegerField(null=True, blank=True)
    # Model serving: set when the collector confirmed a vLLM or SGLang /metrics on the pod.
    model_server = models.CharField(
        max_length=16, choices=[("vllm", "vLLM"), ("sglang", "SGLang")], null=True, blank=True
    )
    model_name = models.CharField(max_length=512, null=True, blank=True)
    first_seen = models.DateTimeField()
    # Kept fresh to within a minute: rewriting every pod row every 10 s would cost more than
    # storing the samples themselves.
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["namespace", "name"]
        indexes = [
            models.Index(fields=["namespace", "name"], name="pod_namespace_name"),
            models.Index(fields=["namespace", "deployment"], name="pod_namespace_deployment"),
            models.Index(
                fields=["model_server"], name="pod_model_server",
                condition=models.Q(model_server__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class Container(models.Model):
    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="containers")
    name = models.CharField(max_length=253)
    # The runtime's id of the current instance; it changes when the container restarts.
    container_id = models.CharField(max_length=128, blank=True, default="")
    image = models.CharField(max_length=512, blank=True, default="")
    # State from the collector's pod list; null = unknown.
    ready = models.BooleanField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=CONTAINER_STATES, null=True, blank=True)
    state_reason = models.CharField(max_length=128, null=True, blank=True)
    last_termination_reason = models.CharField(max_length=128, null=True, blank=True)
    last_termination_time = models.DateTimeField(null=True, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["pod", "name"]
        constraints = [
            models.UniqueConstraint(fields=["pod", "name"], name="container_pod_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.pod}/{self.name}"


class ApiToken(models.Model):
    """A bearer token for machines: collectors (ingest scope) or API readers (read scope).

    The token is shown once when created; only a SHA-256 digest of its secret part is stored.
    """

    class Scope(models.TextChoices):
        INGEST = "ingest"
        READ = "read"

    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.INGEST)
    # An ingest token bound to a cluster may write only into that cluster (403 naming `cluster`
    # otherwise); null: any cluster.
    cluster = models.ForeignKey(
        Cluster, on_delete=models.PROTECT, null=True, blank=True, related_name="tokens",
        help_text="Ingest tokens only: the one cluster this token may write into (empty: any).",
    )
    # Public lookup key, the first part of the token ("km_<prefix>_<secret>").
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    # Written at most once a minute, to keep authentication off the write path.
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"


class SampleBase(models.Model):
    id = models.BigAutoField(primary_key=True)
    # Start of the interval this sample covers (see the module docstring).
    time = models.DateTimeField()
    interval_seconds = models.FloatField()
    cpu_seconds = models.FloatField(null=True, blank=True)
    memory_working_set_bytes = models.BigIntegerField(null=True, blank=True)
    memory_rss_bytes = models.BigIntegerField(null=True, blank=True)
    memory_cache_bytes = models.BigIntegerField(null=True, blank=True)
    disk_read_bytes = models.BigIntegerField(null=True, blank=True)
    disk_write_bytes = models.BigIntegerField(null=True, blank=True)
    disk_read_ops = models.BigIntegerField(null=True, blank=True)
    disk_write_ops = models.BigIntegerField(null=True, blank=True)
    cpu_throttled_seconds = models.FloatField(null=True, blank=True)
    cpu_throttled_periods = models.BigIntegerField(null=True, blank=True)
    cpu_periods = models.BigIntegerField(null=True, blank=True)
    oom_kills = models.IntegerField(null=True, blank=True)
    # Pressure stall time during the interval, from the *.pressure "total=" counters (µs → s).
    psi_cpu_some_seconds = models.FloatField(null=True, blank=True)
    psi_memory_some_seconds = models.FloatField(null=True, blank=True)
    psi_memory_full_seconds = models.FloatField(null=True, blank=True)
    psi_io_some_seconds = models.FloatField(null=True, blank=True)
    psi_io_full_seconds = models.FloatField(null=True, blank=True)
    gpu_utilization_percent = models.FloatField(null=True, blank=True)
    gpu_memory_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        abstract = True


class NetworkMixin(models.Model):
    net_rx_bytes = models.BigIntegerField(null=True, blank=True)
    net_tx_bytes = models.BigIntegerField(null=True, blank=True)
    net_rx_packets = models.BigIntegerField(null=True, blank=True)
    net_tx_packets = models.BigIntegerField(null=True, blank=True)
    net_rx_errors = models.BigIntegerField(null=True, blank=True)
    net_tx_errors = models.BigIntegerField(null=True, blank=True)
    net_rx_dropped = models.BigIntegerField(null=True, blank=True)
    net_tx_dropped = models.BigIntegerField(null=True, blank=True)

    class Meta:
        abstract = True


class NodeSample(SampleBase, NetworkMixin):
    # No single-column FK indexes on samples: the (key, time) indexes below serve every lookup
    # by key, and each extra index is one more insert per row on the ingest hot path.
    node = models.ForeignKey(
        Node, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    cpu_capacity_cores = models.FloatField(null=True, blank=True)
    memory_total_bytes = models.BigIntegerField(null=True, blank=True)
    memory_available_bytes = models.BigIntegerField(null=True, blank=True)
    fs_used_bytes = models.BigIntegerField(null=True, blank=True)
    fs_capacity_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            # Also the idempotency key of a whole ingest batch: one batch per node per interval.
            models.UniqueConstraint(fields=["node", "time"], name="nodesample_node_time_unique"),
        ]
        indexes = [models.Index(fields=["-time"], name="nodesample_time")]


class PodSample(SampleBase, NetworkMixin):
    pod = models.ForeignKey(
        Pod, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    node = models.ForeignKey(
        Node, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    # Copied from the pod so rollups group by them without a join (continuous aggregates
    # cannot join cheaply, and a pod's namespace and Deployment never change).
    namespace = models.CharField(max_length=253)
    deployment = models.CharField(max_length=253, null=True, blank=True)
    cpu_limit_cores = models.FloatField(null=True, blank=True)
    memory_limit_bytes = models.BigIntegerField(null=True, blank=True)
    fs_used_bytes = models.BigIntegerField(null=True, blank=True)
    cpu_request_cores = models.FloatField(null=True, blank=True)
    memory_request_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pod", "time"], name="podsample_pod_time_unique"),
        ]
        indexes = [
            models.Index(fields=["namespace", "deployment", "-time"], name="podsample_ns_dep_time"),
            models.Index(fields=["node", "-time"], name="podsample_node_time"),
            models.Index(fields=["-time"], name="podsample_time"),
            # Alerting's "OOM kills in the window" reads only these rare rows (partial: no cost
            # on the ingest path for the other rows).
            models.Index(fields=["-time"], condition=models.Q(oom_kills__gt=0), name="podsample_oom_kills"),
        ]


class ContainerSample(SampleBase):
    container = models.ForeignKey(
        Container, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    pod = models.ForeignKey(
        Pod, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    cpu_limit_cores = models.FloatField(null=True, blank=True)
    memory_limit_bytes = models.BigIntegerField(null=True, blank=True)
    restarts = models.IntegerField(null=True, blank=True)
    cpu_request_cores = models.FloatField(null=True, blank=True)
    memory_request_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["container", "time"], name="containersample_container_time_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["pod", "-time"], name="containersample_pod_time"),
            models.Index(fields=["-time"], name="containersample_time"),
            # Alerting's "restarts in the window" reads only these rare rows.
            models.Index(fields=["-time"], condition=models.Q(restarts__gt=0), name="containersample_restarts"),
        ]


# --- GPUs (issue 9) ------------------------------------------------------------------------------


class GpuDevice(models.Model):
    """One GPU, or one MIG instance of a GPU, as NVML names it on its node.

    Written only when something about it changes, or to move last_seen on once a minute
    (metrics/ingest/gpus.py), like pods.
    """

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="gpus")
    # NVML's UUID: GPU-<uuid> for a GPU, MIG-<uuid> for a MIG instance.
    uuid = models.CharField(max_length=96, unique=True)
    # NVML's device index on the node; for a MIG instance its slot on the parent GPU.
    index = models.IntegerField()
    name = models.CharField(max_length=253, help_text="Model name, e.g. NVIDIA H100 80GB HBM3.")
    memory_total_bytes = models.BigIntegerField(null=True, blank=True)
    # "enabled" / "disabled"; empty where the GPU cannot do MIG (and on MIG instances).
    mig_mode = models.CharField(max_length=16, blank=True, default="")
    driver_version = models.CharField(max_length=64, blank=True, default="")
    # For a MIG instance: the UUID of its GPU.
    parent_uuid = models.CharField(max_length=96, blank=True, default="")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["node", "index", "uuid"]

    def __str__(self) -> str:
        return f"{self.node_id}/{self.index} {self.name} ({self.uuid})"


class GpuSample(models.Model):
    """One device's figures over one collection interval (a hypertable in the TimescaleDB tiers).

    Utilisation, memory, power and temperature are the interval's means (gauges): a bucket's value
    is their time-weighted mean over the seconds the samples cover. The pod is the one the device
    was attributed to (allocated by the kubelet or holding its memory); a device shared by several
    pods (time-slicing) has no single pod: `shared` is true and `pods` lists them all.
    """

    id = models.BigAutoField(primary_key=True)
    # Start of the interval (see the module docstring).
    time = models.DateTimeField()
    interval_seconds = models.FloatField()
    device = models.ForeignKey(
        GpuDevice, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    node = models.ForeignKey(
        Node, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    # Named like the node and pod samples' GPU fields, so the metric catalogue reads them alike.
    gpu_utilization_percent = models.FloatField(null=True, blank=True)
    gpu_memory_bytes = models.BigIntegerField(null=True, blank=True)
    # The device's memory at the time (for % of device memory in rollups without a join).
    gpu_memory_total_bytes = models.BigIntegerField(null=True, blank=True)
    gpu_power_watts = models.FloatField(null=True, blank=True)
    gpu_temperature_celsius = models.FloatField(null=True, blank=True)
    pod = models.ForeignKey(
        Pod, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+",
        null=True, blank=True,
    )
    namespace = models.CharField(max_length=253, blank=True, default="")
    pod_name = models.CharField(max_length=253, blank=True, default="")
    container = models.CharField(max_length=253, blank=True, default="")
    shared = models.BooleanField(default=False)
    # Every pod holding the device: uid, namespace, pod, container, allocated, memory_bytes,
    # utilization_percent (the ingest contract's gpus[].pods).
    pods = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "time"], name="gpusample_device_time_unique"),
        ]
        indexes = [
            models.Index(fields=["node", "-time"], name="gpusample_node_time"),
            models.Index(fields=["-time"], name="gpusample_time"),
        ]


# Alerting's models live in their own module (metrics/alerts/models.py); importing them here is
# how Django finds them in the `metrics` app.
from metrics.alerts.models import (  # noqa: E402,F401
    AlertInstance, AlertRule, DeliveryAttempt, Notification, NotificationGroup, Receiver, Silence,
)
class ServingSample(models.Model):
    """What a vLLM or SGLang server did during one interval (the pod's `serving` block).

    Counters are usage during the interval (tokens, requests), so sums over any buckets are exact;
    gauges are the value read at the interval's end; latency histograms are kept as the
    interval's sum and count (exact means over any buckets) plus p50/p95 interpolated in the
    interval's bucket deltas.
    """

    id = models.BigAutoField(primary_key=True)
    # Start of the interval this sample covers, like the other samples.
    time = models.DateTimeField()
    interval_seconds = models.FloatField()
    pod = models.ForeignKey(
        Pod, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    node = models.ForeignKey(
        Node, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    # Copied from the pod, so per-Deployment and per-namespace sums need no join.
    namespace = models.CharField(max_length=253)
    deployment = models.CharField(max_length=253, null=True, blank=True)
    model_server = models.CharField(max_length=16)
    model_name = models.CharField(max_length=512, null=True, blank=True)
    requests_running = models.FloatField(null=True, blank=True)
    requests_waiting = models.FloatField(null=True, blank=True)
    kv_cache_usage_percent = models.FloatField(null=True, blank=True)
    prompt_tokens = models.BigIntegerField(null=True, blank=True)
    generation_tokens = models.BigIntegerField(null=True, blank=True)
    requests_succeeded = models.BigIntegerField(null=True, blank=True)
    preemptions = models.BigIntegerField(null=True, blank=True)
    ttft_seconds_sum = models.FloatField(null=True, blank=True)
    ttft_count = models.BigIntegerField(null=True, blank=True)
    ttft_p50_seconds = models.FloatField(null=True, blank=True)
    ttft_p95_seconds = models.FloatField(null=True, blank=True)
    itl_seconds_sum = models.FloatField(null=True, blank=True)
    itl_count = models.BigIntegerField(null=True, blank=True)
    itl_p50_seconds = models.FloatField(null=True, blank=True)
    itl_p95_seconds = models.FloatField(null=True, blank=True)
    e2e_seconds_sum = models.FloatField(null=True, blank=True)
    e2e_count = models.BigIntegerField(null=True, blank=True)
    e2e_p50_seconds = models.FloatField(null=True, blank=True)
    e2e_p95_seconds = models.FloatField(null=True, blank=True)
    # The server restarted during the interval (its counters went down).
    restarted = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pod", "time"], name="servingsample_pod_time_unique"),
        ]
        indexes = [
            models.Index(fields=["namespace", "deployment", "-time"], name="servingsample_ns_dep_time"),
            models.Index(fields=["-time"], name="servingsample_time"),
        ]


class RollupPoisonedBucket(models.Model):
    """A rollup bucket the refresh left empty because its sums overflow (metrics/rollups.py).

    Only rows written around ingest's bounds can cause one; delete the offending samples and run
    `manage.py refreshrollups --since <bucket>` to rebuild it, which also removes this row.
    """

    resolution = models.CharField(max_length=2)  # 1m / 1h
    entity = models.CharField(max_length=16)  # node / pod / namespace / deployment
    bucket = models.DateTimeField()
    error = models.TextField()
    recorded_at = models.DateTimeField()

    class Meta:
        db_table = "metrics_rollup_poisoned"
        constraints = [
            models.UniqueConstraint(
                fields=["resolution", "entity", "bucket"], name="rollup_poisoned_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resolution} {self.entity} {self.bucket:%Y-%m-%dT%H:%M}Z"
