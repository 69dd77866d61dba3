"""The read API's router. Nested resources are registered with their parent in the prefix."""

from __future__ import annotations

from rest_framework.routers import APIRootView, DefaultRouter

from metrics.alerts import api as alerts_api
from metrics.api import clusters, gpu_views, rightsizing, schema, summary, views  # noqa: F401  (schema registers the token scheme)
from metrics.api.views import NAME_REGEX

class ApiRoot(APIRootView):
    """kubemonitor: Kubernetes CPU, memory, disk, network and GPU use per node, pod, container,
    namespace and Deployment, with history, from its own collectors (no metrics-server, no
    Prometheus).

    Each link below lists one kind; a detail with `?window=SECONDS` (or `start`/`end`, `step`)
    adds a series. Reading needs a session or a read token (`Authorization: Bearer km_...`).
    Reference: /api/docs/ (Swagger UI), /api/schema/ (OpenAPI); collectors POST to /api/ingest/;
    kubemonitor's own figures for Prometheus are at /metrics.
    """

    def get_view_name(self) -> str:
        return "kubemonitor API"


# Names contain dots, so no `.json` format suffixes; `?format=json` still works.
router = DefaultRouter()
router.APIRootView = ApiRoot
router.include_format_suffixes = False
router.register("cluster", clusters.ClusterViewSet, basename="cluster")
router.register("clusters", clusters.ClustersViewSet, basename="clusters")
router.register("summary", summary.SummaryViewSet, basename="summary")
router.register("statistics", summary.StatisticsViewSet, basename="statistics")
router.register("rightsizing", rightsizing.WasteListViewSet, basename="rightsizing")
router.register("series", views.SeriesViewSet, basename="series")
router.register("nodes", views.NodeViewSet, basename="node")
router.register(rf"nodes/(?P<node>{NAME_REGEX})/pods", views.NodePodViewSet, basename="node-pod")
router.register("pods", views.PodViewSet, basename="pod")
router.register("namespaces", views.NamespaceViewSet, basename="namespace")
router.register(
    rf"namespaces/(?P<namespace>{NAME_REGEX})/pods", views.NamespacePodViewSet, basename="namespace-pod"
)
router.register(
    rf"namespaces/(?P<namespace>{NAME_REGEX})/pods/(?P<pod>{NAME_REGEX})/containers",
    views.PodContainerViewSet,
    basename="pod-container",
)
router.register(
    rf"namespaces/(?P<namespace>{NAME_REGEX})/deployments",
    views.NamespaceDeploymentViewSet,
    basename="namespace-deployment",
)
router.register(
    rf"namespaces/(?P<namespace>{NAME_REGEX})/deployments/(?P<deployment>{NAME_REGEX})/pods",
    views.DeploymentPodViewSet,
    basename="deployment-pod",
)
router.register(
    rf"namespaces/(?P<namespace>{NAME_REGEX})/deployments/(?P<deployment>{NAME_REGEX})/rightsizing",
    rightsizing.DeploymentSizingViewSet,
    basename="deployment-rightsizing",
)
router.register(
    rf"namespaces/(?P<namespace>{NAME_REGEX})/pods/(?P<pod>{NAME_REGEX})/rightsizing",
    rightsizing.PodSizingViewSet,
    basename="pod-rightsizing",
)
router.register("deployments", views.DeploymentViewSet, basename="deployment")
router.register("model-servers", views.ModelServerViewSet, basename="model-server")
router.register(
    rf"model-servers/(?P<namespace>{NAME_REGEX})",
    views.NamespaceModelServerViewSet,
    basename="model-server-namespace",
)

# GPUs (metrics/api/gpu_views.py).
router.register("gpus", gpu_views.GpuViewSet, basename="gpu")
router.register(rf"nodes/(?P<node>{NAME_REGEX})/gpus", gpu_views.NodeGpuViewSet, basename="node-gpu")

# Alerting (metrics/alerts/api.py).
router.register("alerts", alerts_api.AlertViewSet, basename="alert")
router.register("alert-rules", alerts_api.AlertRuleViewSet, basename="alert-rule")

urlpatterns = router.urls
