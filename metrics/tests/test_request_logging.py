"""Expected 4xx answers are not logged as warnings; a 500 still is an error in the log."""

from __future__ import annotations

import logging

from django.http import HttpResponse
from django.test import Client
from django.utils.log import log_response

from metrics.tests import factories as f
from metrics.tests.ingest_helpers import post


def test_refused_batches_and_unknown_names_log_no_warning(db, ingest_token, caplog):
    client = Client()
    caplog.set_level(logging.DEBUG, logger="metrics")  # leaves django.request's own level alone
    bad = f.batch("worker-1", pods=1)
    bad["pods"][0]["foo"] = 1
    assert post(client, ingest_token, bad).status_code == 400
    assert post(client, None, bad).status_code == 401
    assert client.get("/api/nodes/nope/").status_code in (401, 404)
    assert client.get("/no-such-page").status_code == 404
    assert [r for r in caplog.records if r.name == "django.request" and r.levelno >= logging.WARNING] == []


def test_a_server_error_is_still_logged_as_an_error(caplog):
    # Django's own call for every answer >= 400 (django.core.handlers.base), with our settings.
    log_response("Internal Server Error: %s", "/x", response=HttpResponse(status=500))
    log_response("Not Found: %s", "/x", response=HttpResponse(status=404))
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [r.levelno for r in records] == [logging.ERROR]
