"""The read API's router. Nested resources are registered with their parent in the prefix."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from metrics.api import clusters, rightsizing, schema, summary, views  # noqa: F401  (schema registers the token scheme)
from metrics.api.views import NAME_REGEX

# Names contain dots, so no `.json` format suffixes; `?format=json` still works.
router = DefaultRouter()
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

urlpatterns = router.urls
