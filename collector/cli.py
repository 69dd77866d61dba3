"""`python -m collector`: parse flags and environment, then run the agent loop."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping

from collector import __version__
from collector.config import OPTIONS, Config, attr_name, from_env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m collector",
        description="kubemonitor node collector: reads /proc and cgroups (v1 and v2) every "
        "interval and POSTs one batch per node to the kubemonitor API. Every option can also be "
        "set by the environment variable shown; a flag wins over its variable.",
    )
    for option in OPTIONS:
        kwargs: dict[str, object] = {
            "dest": attr_name(option),
            "default": None,
            "help": f"{option.help} [env {option.env}, default {option.default!r}]",
            "type": option.kind,
        }
        if option.choices:
            kwargs["choices"] = option.choices
        parser.add_argument(option.flag, **kwargs)  # type: ignore[arg-type]
    parser.add_argument("--dry-run", action="store_true",
                        help="Print each batch as one JSON line to stdout instead of sending it.")
    parser.add_argument("--count", type=int, default=None,
                        help="Stop after this many batches (the priming cycle is not a batch).")
    parser.add_argument("--once", action="store_true",
                        help="Same as --count 1.")
    parser.add_argument("--version", action="version", version=f"kubemonitor-collector {__version__}")
    return parser


def parse_config(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        values = from_env(environ)
    except ValueError as exc:
        parser.error(str(exc))
    for option in OPTIONS:
        value = getattr(args, attr_name(option))
        if value is not None:
            values[attr_name(option)] = value
    if args.count is not None and args.count < 1:
        parser.error("--count must be at least 1")
    interval = float(values.get("interval", 10.0))  # type: ignore[arg-type]
    if not 0 < interval <= 3600:
        parser.error("--interval must be > 0 and <= 3600 seconds")
    return Config(**values, dry_run=args.dry_run,  # type: ignore[arg-type]
                  count=1 if args.once else args.count, once=args.once)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    setup_logging(config.log_level)
    from collector.agent import run

    return run(config)
