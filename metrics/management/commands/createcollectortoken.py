"""Print a new machine token: `python manage.py createcollectortoken NAME [--scope read]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from metrics.models import ApiToken
from metrics.tokens import create_token


class Command(BaseCommand):
    help = "Create a token for a collector (ingest scope) or an API reader (read scope) and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A unique name, e.g. the cluster or node it is for.")
        parser.add_argument(
            "--scope", choices=[s.value for s in ApiToken.Scope], default=ApiToken.Scope.INGEST
        )

    def handle(self, *args: Any, name: str, scope: str, **options: Any) -> None:
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(f"A token named {name!r} already exists; revoke it in the admin or pick another name.")
        _, plaintext = create_token(name, scope)
        self.stdout.write(plaintext)
