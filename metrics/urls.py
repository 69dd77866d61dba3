"""Routes of the metrics app: the API under /api/, its schema and docs, health probes, /metrics, the dashboard."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from metrics import dashboard, health
from metrics.scrape import MetricsView
from metrics.api.urls import urlpatterns as api_urlpatterns
from metrics.ingest.views import IngestView

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", MetricsView.as_view(), name="prometheus-metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view: its init script is a separate file, so the CSP needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/auth/", include("rest_framework.urls")),
    path("api/ingest/", IngestView.as_view(), name="ingest"),
    path("api/", include(api_urlpatterns)),
    # The dashboard (metrics/dashboard.py).
    path("", dashboard.overview, name="dashboard"),
    path("nodes/", dashboard.nodes, name="dash-nodes"),
    path("nodes/<str:node>/", dashboard.node, name="dash-node"),
    path("namespaces/", dashboard.namespaces, name="dash-namespaces"),
    path("namespaces/<str:namespace>/", dashboard.namespace, name="dash-namespace"),
    path(
        "namespaces/<str:namespace>/deployments/<str:deployment>/", dashboard.deployment,
        name="dash-deployment",
    ),
    path("namespaces/<str:namespace>/pods/<str:pod>/", dashboard.pod, name="dash-pod"),
    path("pods/", dashboard.pods, name="dash-pods"),
    path("views/<slug:slug>/", dashboard.optional, name="dash-optional"),
    path(
        "views/model-servers/<str:namespace>/<str:name>/", dashboard.model_server, name="dash-model-server",
    ),
]
