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

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


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
    first_seen = models.DateTimeField()
    # Kept fresh to within a minute: rewriting every pod row every 10 s would cost more than
    # storing the samples themselves.
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["namespace", "name"]
        indexes = [
            models.Index(fields=["namespace", "name"], name="pod_namespace_name"),
            models.Index(fields=["namespace", "deployment"], name="pod_namespace_deployment"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class Container(models.Model):
    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="containers")
    name = models.CharField(max_length=253)
    # The runtime's id of the current instance; it changes when the container restarts.
    container_id = models.CharField(max_length=128, blank=True, default="")
    image = models.CharField(max_length=512, blank=True, default="")
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

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pod", "time"], name="podsample_pod_time_unique"),
        ]
        indexes = [
            models.Index(fields=["namespace", "deployment", "-time"], name="podsample_ns_dep_time"),
            models.Index(fields=["node", "-time"], name="podsample_node_time"),
            models.Index(fields=["-time"], name="podsample_time"),
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

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["container", "time"], name="containersample_container_time_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["pod", "-time"], name="containersample_pod_time"),
            models.Index(fields=["-time"], name="containersample_time"),
        ]
