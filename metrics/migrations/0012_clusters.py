"""Clusters: the top of the inventory. Existing nodes join the CLUSTER_NAME cluster; ingest tokens
may be bound to one cluster.

The NOT NULL is set in SQL (not by AlterField) so that Django does not evaluate the model's
default, live code, on the way: the column already has a value in every row by then.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import metrics.models


def assign_default_cluster(apps, schema_editor):
    Cluster = apps.get_model("metrics", "Cluster")
    Node = apps.get_model("metrics", "Node")
    if Node.objects.filter(cluster__isnull=True).exists():
        cluster, _ = Cluster.objects.get_or_create(name=settings.CLUSTER_NAME)
        Node.objects.filter(cluster__isnull=True).update(cluster=cluster)


class Migration(migrations.Migration):

    dependencies = [
        ("metrics", "0011_rollup_refresh_seconds"),
    ]

    operations = [
        migrations.CreateModel(
            name="Cluster",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=253, unique=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.AddField(
            model_name="node",
            name="cluster",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="nodes",
                to="metrics.cluster",
            ),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="cluster",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                related_name="tokens", to="metrics.cluster",
                help_text="Ingest tokens only: the one cluster this token may write into (empty: any).",
            ),
        ),
        migrations.RunPython(assign_default_cluster, migrations.RunPython.noop, elidable=False),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    # The UPDATE above queued deferred foreign-key checks; ALTER TABLE refuses to
                    # run while they are pending.
                    "SET CONSTRAINTS ALL IMMEDIATE; "
                    "ALTER TABLE metrics_node ALTER COLUMN cluster_id SET NOT NULL",
                    "ALTER TABLE metrics_node ALTER COLUMN cluster_id DROP NOT NULL",
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="node",
                    name="cluster",
                    field=models.ForeignKey(
                        default=metrics.models.default_cluster_id,
                        on_delete=django.db.models.deletion.PROTECT, related_name="nodes",
                        to="metrics.cluster",
                    ),
                ),
            ],
        ),
    ]
