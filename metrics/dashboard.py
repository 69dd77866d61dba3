"""The dashboard: server-rendered pages; their charts read the read API in the browser.

Each page is a template plus the shared scripts (metrics/static/metrics/core.js for the window,
refresh and charts, pages.js for what each page draws). Tables that must scale to thousands of
pods (the pods table, the pods of a node, namespace or Deployment) are rendered here, filtered,
sorted and paginated on the server; the page re-fetches itself every 30 s to refresh them.
"""

from __future__ import annotations

import json
from functools import wraps
from typing import Any, Callable

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve, reverse

from metrics import series
from metrics.dashboard_pods import (
    PHASE_FIELD, SORTS, PodQuery, has_field, kind_field, pod_filter_choices, pod_rows, restart_field,
)
from metrics.models import Node, Pod

View = Callable[..., HttpResponse]

# Views whose API other parts of kubemonitor add: each page (and its nav item) appears only once
# one of its candidate endpoints is routed. (slug, title, API paths, what the page says while it
# has no rows)
OPTIONAL_VIEWS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("model-servers", "Model servers", ("/api/model-servers/", "/api/modelservers/"),
     "No model servers found: vLLM and SGLang pods appear here once the collector scrapes them."),
    ("alerts", "Alerts", ("/api/alerts/",), "No alerts: nothing is firing and nothing has fired."),
    ("rightsizing", "Right-sizing", ("/api/rightsizing/", "/api/right-sizing/"),
     "No recommendations yet: they need a few hours of pod samples with requests and limits."),
)


def api_exists(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


def optional_views() -> list[dict[str, str]]:
    found = []
    for slug, title, paths, empty in OPTIONAL_VIEWS:
        api = next((p for p in paths if api_exists(p)), None)
        if api:
            found.append({"slug": slug, "title": title, "api": api, "empty": empty})
    return found


def reader(view: View) -> View:
    """The pages hold no data themselves, but without a session their API calls would all fail."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.ALLOW_ANONYMOUS_READS and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        return view(request, *args, **kwargs)

    return wrapper


def _page(request: HttpRequest, template: str, page: str, title: str, **context: Any) -> HttpResponse:
    context.update(
        page=page,
        title=title,
        # The point fields and their units, defined once in metrics.series; the charts are built
        # from this list so a metric added there is charted without touching the scripts.
        # (A data- attribute, not a script block: the CSP allows no inline script at all.)
        points_json=json.dumps([{"name": f.name, "unit": f.unit, "help": f.help} for f in series.POINTS]),
        optional_views=optional_views(),
        # The optional views' pages, for the overview's cards to link to.
        optional_pages={v["slug"].replace("-", "_"): reverse("dash-optional", args=[v["slug"]]) for v in optional_views()},
        summary_api="/api/summary/" if api_exists("/api/summary/") else "",
        alerts_api=next((v["api"] for v in optional_views() if v["slug"] == "alerts"), ""),
        cluster_name=settings.CLUSTER_NAME,
    )
    return render(request, f"metrics/{template}", context)


PER_PAGE = (10, 25, 50, 100, 200)


def _pods_context(request: HttpRequest, fixed: dict[str, str], per_page: int) -> dict[str, Any]:
    query = PodQuery.from_params(request.GET, fixed)
    asked = request.GET.get("per_page", "")
    if asked.isdigit() and int(asked) in PER_PAGE:
        per_page = int(asked)
    try:
        number = max(1, int(request.GET.get("page") or 1))
    except ValueError:
        number = 1
    rows, total = pod_rows(query, (number - 1) * per_page, per_page)
    pages = max(1, -(-total // per_page))
    keep = {"per_page": str(per_page)} if per_page != 50 else {}
    if number > pages:  # past the end (the list shrank): show the last page
        number = pages
        rows, total = pod_rows(query, (number - 1) * per_page, per_page)
    return {
        "query": query,
        "rows": rows,
        "page_number": number,
        "pages": pages,
        "per_page": per_page,
        "previous_page": query.params(page=str(number - 1), **keep) if number > 1 else None,
        "next_page": query.params(page=str(number + 1), **keep) if number < pages else None,
        "sort_links": {k: query.params(sort=("-" + k if query.sort == k else k), **keep) for k in SORTS},
        "total": total,
        "first_row": (number - 1) * per_page + 1 if total else 0,
        "last_row": min(total, number * per_page),
        "choices": pod_filter_choices(fixed),
        "fixed": fixed,
        "has_phase": has_field(PHASE_FIELD),
        "has_kind": kind_field() is not None,
        "has_restarts": restart_field() is not None,
    }


@reader
def overview(request: HttpRequest) -> HttpResponse:
    rows, _ = pod_rows(PodQuery(sort="-cpu"), 0, 10)
    return _page(request, "overview.html", "overview", "Overview", top_pods=rows)


@reader
def nodes(request: HttpRequest) -> HttpResponse:
    return _page(request, "nodes.html", "nodes", "Nodes")


@reader
def node(request: HttpRequest, node: str) -> HttpResponse:
    obj = Node.objects.filter(name=node).first()
    if obj is None:
        raise Http404("No such node.")
    return _page(
        request, "node.html", "node", f"Node {node}", node=obj,
        api=reverse("node-detail", kwargs={"node": node}),
        gpus_api=reverse("node-gpu-list", kwargs={"node": node}),
        **_pods_context(request, {"node": node}, 50),
    )


@reader
def namespaces(request: HttpRequest) -> HttpResponse:
    return _page(request, "namespaces.html", "namespaces", "Namespaces")


@reader
def namespace(request: HttpRequest, namespace: str) -> HttpResponse:
    if not Pod.objects.filter(namespace=namespace).exists():
        raise Http404("No such namespace.")
    return _page(
        request, "namespace.html", "namespace", f"Namespace {namespace}", namespace=namespace,
        api=reverse("namespace-detail", kwargs={"namespace": namespace}),
        deployments_api=reverse("namespace-deployment-list", kwargs={"namespace": namespace}),
        **_pods_context(request, {"namespace": namespace}, 50),
    )


@reader
def deployment(request: HttpRequest, namespace: str, deployment: str) -> HttpResponse:
    if not Pod.objects.filter(namespace=namespace, deployment=deployment).exists():
        raise Http404("No such Deployment.")
    kwargs = {"namespace": namespace, "deployment": deployment}
    context = _pods_context(request, kwargs, 50)
    return _page(
        request, "deployment.html", "deployment", f"Deployment {namespace}/{deployment}",
        namespace=namespace, deployment=deployment,
        api=reverse("namespace-deployment-detail", kwargs=kwargs),
        # The per-pod charts: the pods shown, at most the first page (series_many's limit is 200).
        pod_names_json=json.dumps([r["pod"].name for r in context["rows"]]),
        rightsizing_api=_deployment_rightsizing(namespace, deployment),
        **context,
    )


def _deployment_rightsizing(namespace: str, deployment: str) -> str:
    """The Deployment's right-sizing endpoint, once the right-sizing work routes it."""
    from urllib.parse import quote

    path = f"/api/namespaces/{quote(namespace)}/deployments/{quote(deployment)}/rightsizing/"
    return path if api_exists(path) else ""


@reader
def pod(request: HttpRequest, namespace: str, pod: str) -> HttpResponse:
    obj = Pod.objects.filter(namespace=namespace, name=pod).select_related("node").order_by("-last_seen").first()
    if obj is None:
        raise Http404("No such pod.")
    kwargs = {"namespace": namespace, "pod": pod}
    return _page(
        request, "pod.html", "pod", f"Pod {namespace}/{pod}", pod=obj,
        api=reverse("namespace-pod-detail", kwargs=kwargs),
        containers_api=reverse("pod-container-list", kwargs=kwargs),
        # Container series come from raw samples only; a longer window asks for usage alone.
        raw_retention_seconds=settings.RETENTION_RAW_DAYS * 86400,
    )


@reader
def pods(request: HttpRequest) -> HttpResponse:
    return _page(request, "pods.html", "pods", "Pods", **_pods_context(request, {}, 50))


def _optional_view(slug: str) -> dict[str, str]:
    view = next((v for v in optional_views() if v["slug"] == slug), None)
    if view is None:
        raise Http404("This view's API is not installed.")
    return view


@reader
def optional(request: HttpRequest, slug: str) -> HttpResponse:
    view = _optional_view(slug)
    # Each view has its own layout (pages.js draws body[data-page]); the alerts view has two tabs.
    return _page(
        request, f"{slug}.html", slug, view["title"], view=view,
        history=request.GET.get("state") == "resolved",
        rightsizing_max_window=settings.RETENTION_1M_DAYS * 86400,
    )


@reader
def model_server(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    view = _optional_view("model-servers")
    # A Deployment by default; ?kind=pod for a pod no Deployment owns (as the API takes it).
    kind = "pod" if request.GET.get("kind") == "pod" else "deployment"
    api = reverse("model-server-namespace-detail", kwargs={"namespace": namespace, "server": name})
    return _page(
        request, "model_server.html", "model-server", f"Model server {namespace}/{name}", view=view,
        namespace=namespace, name=name, kind=kind, api=api + ("?kind=pod" if kind == "pod" else ""),
        raw_retention_seconds=settings.RETENTION_RAW_DAYS * 86400,
    )
