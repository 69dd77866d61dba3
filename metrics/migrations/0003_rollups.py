"""Rollup relations metrics_rollup_{node,pod,namespace,deployment}_{1m,1h} for the recorded tier.

Tier tsl: continuous aggregates (real-time, hierarchical) with refresh, retention and compression
policies. Tiers apache / plain: application-maintained tables, a watermark, an invalidation log
and views under the public names (metrics/rollup_schema.py). Refreshing happens outside
migrations: `manage.py refreshrollups` and, in tier tsl, the policies.
"""

from __future__ import annotations

from django.db import migrations

from metrics import backend
from metrics.migrations.snapshots import rollups_0003 as rollup_schema
from metrics.migrations.snapshots import storage_0002 as storage_schema


def forward(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        tier = backend.read_recorded(cursor).tier
        rollup_schema.create_rollups(cursor, tier)
        if tier == "tsl":
            rollup_schema.add_policies(cursor, storage_schema.SAMPLE_TABLES)


def backward(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        tier = backend.read_recorded(cursor).tier
        rollup_schema.drop_rollups(cursor, tier)
        if tier == "tsl":
            rollup_schema.remove_policies(cursor, storage_schema.SAMPLE_TABLES)


class Migration(migrations.Migration):
    dependencies = [("metrics", "0002_sample_keys_and_hypertables")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
