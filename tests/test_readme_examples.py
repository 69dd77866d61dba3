"""The README's read examples answer 200 on the demo data its text suggests loading.

Each `curl ... $API/...` line of the README's API section is taken as written, with `$NODE` (the
local run's own host) standing for a demo node, and sent through Django's test client with a
read token, after `loaddemo --hours 2` as the README says.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from metrics.models import ApiToken
from metrics.tests.factories import reset_rollups
from metrics.tokens import create_token

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_read_paths() -> list[str]:
    text = README.read_text()
    section = text[text.index("<!-- section:api -->") : text.index("<!-- /section:api -->")]
    paths = []
    for line in section.splitlines():
        if not line.startswith("curl ") or "/ingest/" in line:
            continue
        match = re.search(r'"?(\$API/[^" ]*|http://127\.0\.0\.1:8000/[^" ;]*)"?', line)
        if match:
            paths.append(match.group(1).replace("$API", "/api").replace("http://127.0.0.1:8000", ""))
    return paths


def test_the_readme_lists_its_read_examples():
    paths = readme_read_paths()
    assert len(paths) >= 10
    assert "/api/nodes/" in paths and "/metrics" in paths


def readme_ingest_body(now: datetime) -> bytes:
    """The batch of the README's ingest example, with $NOW as the shell would fill it in."""
    text = README.read_text()
    section = text[text.index("<!-- section:api -->") : text.index("<!-- /section:api -->")]
    shell = section[section.index("echo '") + len("echo '") : section.index("' | gzip")]
    return shell.replace("'$NOW'", now.strftime("%Y-%m-%dT%H:%M:%SZ")).encode()


@pytest.mark.django_db(transaction=True)
def test_every_readme_example_works_on_the_demo_data_and_the_example_node_can_be_removed():
    reset_rollups()
    call_command("loaddemo", "--hours", "2", stdout=StringIO())
    token = create_token("readme-reader", ApiToken.Scope.READ)[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    collector = create_token("readme-collector", ApiToken.Scope.INGEST)[1]
    body = readme_ingest_body(datetime.now(timezone.utc))
    assert json.loads(body)["node"] == "my-node"
    response = Client().generic(
        "POST", "/api/ingest/", gzip.compress(body), content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip", HTTP_AUTHORIZATION=f"Bearer {collector}",
    )
    assert response.status_code == 201, response.content
    for path in readme_read_paths():
        path = path.replace("$NODE", "demo-node-1")
        response = client.get(path)
        assert response.status_code == 200, (path, response.content[:300])
        if path.startswith("/api/") and "results" in response.content.decode()[:20]:
            assert response.json()["results"], path
    out = StringIO()
    call_command("deletenode", "my-node", stdout=out)
    assert "deleted node 'my-node': 0 pod(s), 0 container(s), 1 sample(s)" in out.getvalue()
    assert client.get("/api/nodes/my-node/").status_code == 404
