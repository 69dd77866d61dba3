"""Routes of the metrics app. The API, health probes and docs are wired in here."""
from django.urls import path

from metrics.ingest.views import IngestView

urlpatterns: list = [
    path("api/ingest/", IngestView.as_view(), name="ingest"),
]
