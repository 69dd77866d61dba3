"""Remove a node and everything it sent: `python manage.py deletenode NAME [NAME ...]` (metrics.removal)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from metrics.removal import NoSuchNode, delete_node


class Command(BaseCommand):
    help = (
        "Delete a node, its pods and containers and all their samples; the next rollup refresh "
        "recomputes the buckets they were in. For nodes that will not come back."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="+", metavar="NAME", help="Node name, as in /api/nodes/.")

    def handle(self, *args: Any, names: list[str], **options: Any) -> None:
        for name in names:
            try:
                removed = delete_node(name)
            except NoSuchNode:
                raise CommandError(f"No node named {name!r} (see /api/nodes/).") from None
            self.stdout.write(
                f"deleted node {removed.node!r}: {removed.pods} pod(s), {removed.containers} container(s), "
                f"{removed.node_samples + removed.pod_samples + removed.container_samples} sample(s)"
            )
