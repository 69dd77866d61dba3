"""Validation cost of one ingest batch, step by step, in-process (no HTTP, no database).

    python bench/validate.py [--pods 110] [--reps 30] [--tiny]

For a collector-like batch (bench data from metrics/tests/factories.py), prints the best
time in ms over repeated runs of: pydantic's validation from the bytes, the duplicate-key check
(metrics/ingest/duplicates.py), the physical bounds (metrics/ingest/rules.py), and the whole of
parse_batch, plus what the two checks add as a share of parse_batch. Best-of timing, because the
machine these run on is shared: the minimum is the least disturbed figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/unused")


def best_ms(cases: dict[str, Callable[[], object]], reps: int, rounds: int = 15) -> dict[str, float]:
    """Best time per call of each case; the cases take turns within each round, so a burst of
    load elsewhere hits them alike."""
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / reps * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=110)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--tiny", action="store_true", help="5 pods, 3 reps: only checks that it runs")
    args = parser.parse_args()
    if args.tiny:
        args.pods, args.reps = 5, 3

    import django

    django.setup()
    from datetime import timedelta

    from metrics.ingest import duplicates, rules, schema
    from metrics.tests.factories import NodeBatches, tick

    body = json.dumps(NodeBatches("worker-1", pods=args.pods, seed=1).batch(tick(30))).encode()
    batch = schema.IngestBatch.model_validate_json(body)
    now = batch.time
    containers = sum(len(p.containers) for p in batch.pods)
    print(f"batch: {args.pods} pods, {containers} containers, {len(body):,} bytes")
    times = best_ms(
        {
            "validate": lambda: schema.IngestBatch.model_validate_json(body),
            "dup": lambda: duplicates.duplicate_key_errors(body, batch),
            "bounds": lambda: rules.bound_errors(
                batch, schema._NODE_BOUNDS, schema._POD_BOUNDS, schema._CONTAINER_BOUNDS, schema._SERVING_BOUNDS
            ),
            "whole": lambda: schema.parse_batch(body, now, timedelta(days=7)),
        },
        args.reps,
    )
    validate, dup, bounds, whole = (times[k] for k in ("validate", "dup", "bounds", "whole"))
    print(f"pydantic validation: {validate:.3f} ms")
    print(f"duplicate keys: {dup:.3f} ms")
    print(f"bounds: {bounds:.3f} ms")
    print(f"parse_batch: {whole:.3f} ms")
    print(f"checks' share of parse_batch: {(dup + bounds) / whole * 100:.1f} %")


if __name__ == "__main__":
    main()
