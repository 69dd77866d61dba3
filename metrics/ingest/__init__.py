"""POST /api/ingest/: one collector batch per node per interval, validated and stored in one transaction."""
