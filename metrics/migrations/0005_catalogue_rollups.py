"""Rollup columns for everything the catalogue serves: throttled periods, PSI, GPU, node memory
available and filesystem use (snapshot metrics/migrations/snapshots/rollups_0005.py).

Tiers apache / plain keep their materialized rows and recompute the range still held in raw
samples at the next refresh; tier tsl recreates its continuous aggregates. Reversible to 0003's.
"""

from __future__ import annotations

from django.db import migrations

from metrics import backend
from metrics.migrations.snapshots import rollups_0003, rollups_0005


def forward(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        rollups_0005.upgrade(cursor, backend.read_recorded(cursor).tier, rollups_0003)


def backward(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        rollups_0005.downgrade(cursor, backend.read_recorded(cursor).tier, rollups_0003)


class Migration(migrations.Migration):
    dependencies = [("metrics", "0004_drop_redundant_sample_fk_indexes")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
