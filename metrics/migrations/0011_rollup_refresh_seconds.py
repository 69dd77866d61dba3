"""Record how long the newest rollup refresh took (tiers apache and plain), for /metrics.

Tier tsl has no metrics_rollup_state (TimescaleDB's job stats say the same there), hence IF EXISTS.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("metrics", "0010_hardening"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE IF EXISTS metrics_rollup_state ADD COLUMN IF NOT EXISTS refresh_seconds double precision",
            "ALTER TABLE IF EXISTS metrics_rollup_state DROP COLUMN IF EXISTS refresh_seconds",
        ),
    ]
