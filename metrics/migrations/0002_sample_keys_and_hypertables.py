"""Choose the storage tier, key the sample tables on (id, time), and make them hypertables.

See metrics/backend.py for the tiers and metrics/storage_schema.py for each step. Reversing this
migration turns hypertables back into ordinary tables (rows kept), restores the `id` primary keys,
and drops the extension if this migration created it.
"""

from __future__ import annotations

from django.db import migrations

from metrics.migrations.snapshots import storage_0002 as storage_schema


def forward(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        tier = storage_schema.choose_and_record_tier(cursor)
        storage_schema.set_time_primary_keys(cursor)
        if tier != "plain":
            storage_schema.create_hypertables(cursor)


def backward(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        storage_schema.drop_hypertables(cursor)
        storage_schema.restore_id_primary_keys(cursor)
        storage_schema.forget_tier(cursor)


class Migration(migrations.Migration):
    dependencies = [("metrics", "0001_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
