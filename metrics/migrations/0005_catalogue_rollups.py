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
    connection = schema_editor.connection
    rollups_0005.upgrade(connection, rollups_0003, backend.read_recorded(connection).tier)


def backward(apps, schema_editor):
    connection = schema_editor.connection
    rollups_0005.downgrade(connection, rollups_0003, backend.read_recorded(connection).tier)


class Migration(migrations.Migration):
    # Not atomic: in tier tsl the old aggregates' policies must be seen stopped by the job
    # scheduler before they are dropped. The changes themselves run in one transaction.
    atomic = False
    dependencies = [("metrics", "0004_drop_redundant_sample_fk_indexes")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
