"""Print a new machine token: `python manage.py createcollectortoken NAME [--scope read] [--cluster C]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from metrics.models import ApiToken, Cluster
from metrics.tokens import create_token


class Command(BaseCommand):
    help = "Create a token for a collector (ingest scope) or an API reader (read scope) and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A unique name, e.g. the cluster or node it is for.")
        parser.add_argument(
            "--scope", choices=[s.value for s in ApiToken.Scope], default=ApiToken.Scope.INGEST
        )
        parser.add_argument(
            "--cluster", default=None,
            help="Bind the (ingest) token to this cluster, made if missing: it may write into no other.",
        )

    def handle(self, *args: Any, name: str, scope: str, cluster: str | None, **options: Any) -> None:
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(f"A token named {name!r} already exists; revoke it in the admin or pick another name.")
        bound = None
        if cluster is not None:
            if scope != ApiToken.Scope.INGEST:
                raise CommandError("--cluster binds ingest tokens only; read tokens read every cluster.")
            if not cluster.strip() or len(cluster) > 253:
                raise CommandError("--cluster needs a name of 1 to 253 characters.")
            bound, created = Cluster.objects.get_or_create(name=cluster)
            if created:
                self.stderr.write(f"Created cluster {cluster!r}.")
        _, plaintext = create_token(name, scope, bound)
        self.stdout.write(plaintext)
