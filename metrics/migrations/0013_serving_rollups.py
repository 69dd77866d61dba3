"""1-minute and 1-hour rollups per model-server pod, Deployment and namespace (snapshot
metrics/migrations/snapshots/rollups_0013.py).

Reversible: the serving rollups are dropped; the other rollups are untouched.
"""

from __future__ import annotations

from django.db import migrations

from metrics import backend
from metrics.migrations.snapshots import rollups_0013


def forward(apps, schema_editor):
    connection = schema_editor.connection
    rollups_0013.upgrade(connection, backend.read_recorded(connection).tier)


def backward(apps, schema_editor):
    connection = schema_editor.connection
    rollups_0013.downgrade(connection, backend.read_recorded(connection).tier)


class Migration(migrations.Migration):
    # Not atomic: in tier tsl, reversing must see the aggregates' policies stopped before dropping
    # them (as 0005). The changes themselves run in one transaction.
    atomic = False
    dependencies = [("metrics", "0012_clusters")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
