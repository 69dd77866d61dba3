"""The dashboard in real headless Chromium, on demo data served by a real gunicorn.

Each page must load without a console error and draw charts with points; the window picker must
redraw and keep its state in the URL; the pods table must filter, sort and page. Screenshots go
to test-output/dashboard/ (KUBEMONITOR_TEST_OUTPUT overrides the root).
"""

from __future__ import annotations

import re
from importlib import import_module
from datetime import datetime, timedelta, timezone
from io import StringIO
from typing import Any, Iterator

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.db import connections
from django.test.utils import setup_databases, teardown_databases

from metrics.tests.factories import reset_rollups
from metrics.ingest import writer
from metrics.models import Pod
from metrics.tests import browser
from metrics.tests.gunicorn_server import Gunicorn, database_url_of_test_db

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(browser.missing_reason() is not None, reason=browser.missing_reason() or ""),
]


@pytest.fixture(scope="module")
def demo(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Demo data committed to the test database (a real server reads it), removed afterwards."""
    own_database = None
    with django_db_blocker.unblock():
        # pytest-django creates the test database only when a collected test asks for `db`; with
        # these tests alone (-k), none does, so it is made here.
        if not connections["default"].settings_dict["NAME"].startswith("test_"):
            own_database = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        writer.clear_cache()
        # The default alert rules come from a data migration, which a transactional test run
        # earlier empties with its flush; loaddemo evaluates them (one fires on the demo data).
        import_module("metrics.migrations.0008_alerts").install_default_rules(django_apps, None)
        # 2.5 h: the data starts mid-hour, so with 1-hour buckets the first one is partial
        # whenever the newest one (still filling) is not.
        call_command("loaddemo", "--hours", "2.5", "--nodes", "3", stdout=StringIO())
        url = database_url_of_test_db()
        pod = Pod.objects.filter(namespace="shop", deployment="frontend").order_by("name").first()
        assert pod is not None
        info = {"pod": pod.name, "pods": Pod.objects.count()}
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    try:
        with Gunicorn(log, url, args=["--threads", "4"], env={"ALLOW_ANONYMOUS_READS": "true"}) as server:
            yield {"url": server.url, **info}
    finally:
        with django_db_blocker.unblock():
            call_command("flush", "--noinput", verbosity=0)
            # flush truncates Django's tables only: the rollups and their watermark (moved to
            # the present by loaddemo's refresh) would hide the next tests' samples.
            reset_rollups()
            writer.clear_cache()
            if own_database is not None:
                connections.close_all()
                teardown_databases(own_database, verbosity=0)


@pytest.fixture(scope="module")
def chromium(demo: dict[str, Any]) -> Iterator[Any]:
    # After `demo`, so it is closed before the demo data is flushed: while Playwright's event
    # loop runs, Django refuses database calls as if made from async code. So the browser tests
    # ask for no `db`; they only read what `demo` committed, through the server.
    with browser.chromium() as b:
        yield b


@pytest.fixture
def page(chromium: Any) -> Iterator[browser.WatchedPage]:
    watched = browser.WatchedPage(chromium)
    yield watched
    watched.page.close()


def shot(name: str) -> str:
    return str(browser.output_dir("dashboard") / name)


# transactional_db, not db: a `db` test would run among the rollback tests, and the demo's
# refresh moves TimescaleDB's continuous-aggregate watermark to the present, hiding their samples.
def test_the_demo_data_has_something_for_every_page(demo: dict[str, Any], transactional_db: None) -> None:
    assert Pod.objects.filter(namespace="shop", deployment="frontend").count() == 3
    assert Pod.objects.exclude(deployment=None).values("deployment").distinct().count() == 6
    assert set(Pod.objects.values_list("node__name", flat=True)) == {"demo-node-1", "demo-node-2", "demo-node-3"}


def test_every_page_loads_without_console_errors_and_draws_charts_with_points(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    pod = demo["pod"]
    pages = {
        "overview": "/",
        "nodes": "/nodes/",
        "node": "/nodes/demo-node-1/",
        "namespaces": "/namespaces/",
        "namespace": "/namespaces/shop/",
        "deployment": "/namespaces/shop/deployments/frontend/",
        "pod": f"/namespaces/shop/pods/{pod}/",
        "pods": "/pods/",
    }
    for name, path in pages.items():
        p = page.open(demo["url"] + path)
        assert page.errors == [], f"{path}: {page.errors}"
        assert p.is_hidden("#error"), p.inner_text("#error")
        assert p.inner_text("#updated").startswith("Updated at")
        if name != "pods":
            charts = page.charts()
            assert charts, f"{path} drew no chart"
            empty = [k for k, c in charts.items() if int(c["points"]) == 0]
            assert not empty, f"{path}: charts without points: {empty}"
            # A uPlot canvas per chart, with axes (their labels are DOM nodes).
            assert p.locator("figure[data-chart] canvas").count() == len(charts)
            assert p.locator("figure[data-chart] .u-axis").count() >= 2 * len(charts)
        p.screenshot(path=shot(f"{name}.png"), full_page=True)


def test_the_overview_shows_cards_and_top_consumers(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/")
    cards = p.inner_text("#cards")
    assert "3 / 3" in cards and "CPU" in cards and "MEMORY" in cards.upper()
    assert re.search(r"\d+(\.\d+)? (cores|m)", cards)
    assert p.locator("#top-pods tbody tr").count() == 10
    assert p.locator("#top-deployments tbody tr").count() == 6
    assert page.errors == []


def test_a_gpu_node_shows_its_gpus_who_holds_them_and_their_charts(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/nodes/demo-node-1/")
    gpus = p.inner_text("#gpus")
    assert "NVIDIA L4" in gpus and "ml/vllm-" in gpus
    assert p.locator("#gpus section.gpu").count() == 2
    charts = [c for k, c in page.charts().items() if c["chart"].startswith("gpu|")]
    assert {c["chart"] for c in charts} >= {"gpu|%", "gpu|W", "gpu|°C", "gpu|bytes"}
    assert all(int(c["points"]) > 0 for c in charts)
    # A node without GPUs shows none and no GPU section.
    p2 = page.open(demo["url"] + "/nodes/demo-node-2/")
    assert p2.inner_text("#gpus") == ""
    assert page.errors == []


def test_hovering_a_chart_shows_the_time_and_values_with_units(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/")
    over = p.locator('figure[data-chart="cpu|millicores"] .u-over')
    box = over.bounding_box()
    assert box
    p.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    tip = p.locator('figure[data-chart="cpu|millicores"] .km-tip')
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert re.search(r"\d{1,2}/\d{1,2}/\d{4}", text), text  # the bucket's date and time
    assert re.search(r"cpu: \d+(\.\d+)? (m|cores)", text), text
    assert page.errors == []


def test_a_new_window_redraws_every_chart_and_lives_in_the_url(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/namespaces/shop/deployments/frontend/")
    before = page.charts()
    p.select_option("#window", "900")
    page.wait_refreshed(2)
    after = page.charts()
    assert after.keys() == before.keys()
    for key in before:
        assert after[key]["window"] != before[key]["window"], key
        assert int(after[key]["points"]) > 0
    assert "window=900" in p.url
    # The state survives a reload and is carried to the next page.
    p.reload()
    page.wait_refreshed(1)
    assert p.input_value("#window") == "900"
    p.click("text=shop")
    p.wait_for_url(re.compile(r"/namespaces/shop/\?window=900"))
    page.wait_refreshed(1)
    assert page.errors == []


def test_every_window_from_15_minutes_to_30_days_draws_without_errors(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/namespaces/shop/deployments/frontend/")
    options = [o for o in p.locator("#window option").evaluate_all("os => os.map(o => o.value)") if o != "custom"]
    assert options == ["900", "3600", "21600", "86400", "604800", "2592000"]
    for n, seconds in enumerate(options, start=2):
        p.select_option("#window", seconds)
        page.wait_refreshed(n)
        assert p.is_hidden("#error"), (seconds, p.inner_text("#error"))
        charts = page.charts()
        assert charts and all(int(c["points"]) > 0 for c in charts.values()), (seconds, charts)
    assert page.errors == []


def test_a_pod_on_a_window_longer_than_raw_retention_says_why_its_containers_have_no_charts(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + f"/namespaces/shop/pods/{demo['pod']}/?window=2592000")
    assert "containers have raw samples only" in p.inner_text("#containers")
    assert p.locator("#containers section.container").count() == 2  # nginx and app, usage bars only
    assert int(page.charts()["0:cpu|millicores"]["points"]) > 0  # the pod's own series still draws
    assert page.errors == []


def test_a_custom_range_redraws_with_those_bounds(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/")
    now = datetime.now(timezone.utc)
    local = "%Y-%m-%dT%H:%M"  # the page runs in UTC (browser.WatchedPage)
    p.select_option("#window", "custom")
    assert p.is_visible("#custom-range")
    p.fill("#range-start", (now - timedelta(hours=2)).strftime(local))
    p.fill("#range-end", (now - timedelta(hours=1)).strftime(local))
    p.click("#range-apply")
    page.wait_refreshed(2)
    assert "start=" in p.url and "end=" in p.url
    charts = page.charts()
    assert charts and all(int(c["points"]) > 0 for c in charts.values())
    # A range before the demo data: every chart area says what to do instead of a flat line.
    p.fill("#range-start", (now - timedelta(hours=20)).strftime(local))
    p.fill("#range-end", (now - timedelta(hours=19)).strftime(local))
    p.click("#range-apply")
    page.wait_refreshed(3)
    assert "No samples in this window" in p.inner_text("#charts")
    assert page.errors == []


def test_partial_buckets_are_marked(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    # 1-hour buckets: the newest is still filling, and the data started in the middle of the first.
    p = page.open(demo["url"] + "/?window=604800")
    charts = page.charts()
    assert any(int(c["partial"]) >= 1 for c in charts.values()), charts
    assert p.locator("figure[data-chart] .note", has_text="partial bucket").count() >= 1


def test_it_refreshes_every_30_seconds_until_paused(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    # Playwright's fake clock drives the page's timers, so the test need not wait 30 s.
    page.page.clock.install()
    p = page.open(demo["url"] + "/")
    page.page.clock.run_for(31_000)
    page.wait_refreshed(2)
    assert p.inner_text("#updated").startswith("Updated at")

    p.click("#pause")
    assert "paused=1" in p.url
    assert p.get_attribute("#pause", "aria-pressed") == "true"
    assert p.inner_text("#pause") == "Resume"
    page.page.clock.run_for(95_000)
    p.wait_for_timeout(500)
    assert page.refreshes() == 2
    # Refresh still works by hand, and a paused view stays paused when reloaded.
    p.click("#refresh-now")
    page.wait_refreshed(3)
    p.reload()
    page.wait_refreshed(1)
    assert p.inner_text("#pause") == "Resume"
    assert page.errors == []


def test_the_pods_table_filters_sorts_and_pages(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/pods/")
    total = demo["pods"]
    assert p.locator("#pods-table tbody tr").count() == total

    p.select_option("select[name=namespace]", "shop")
    p.click("#pod-filters button[type=submit]")
    page.wait_refreshed(1)
    namespaces = p.locator("#pods-table tbody tr td:nth-child(2)").all_inner_texts()
    assert namespaces and set(namespaces) == {"shop"}
    assert "namespace=shop" in p.url

    p.fill("input[name=q]", "frontend")
    p.click("#pod-filters button[type=submit]")
    page.wait_refreshed(1)
    names = p.locator("#pods-table tbody tr td:first-child").all_inner_texts()
    assert len(names) == 3 and all(n.startswith("frontend-") for n in names)

    # Sorted by CPU, largest first: the server orders by each pod's newest sample.
    p.goto(demo["url"] + "/pods/?sort=-cpu")
    page.wait_refreshed(1)
    cpu = [float(v) for v in p.locator("#pods-table td[data-unit=millicores]").evaluate_all("els => els.map(e => e.dataset.value)")]
    assert cpu == sorted(cpu, reverse=True)

    p.goto(demo["url"] + "/pods/?per_page=10")
    page.wait_refreshed(1)
    assert p.locator("#pods-table tbody tr").count() == 10
    assert f"of {total}" in p.inner_text("#pods-table")
    p.click("#pods-table a[rel=next]")
    page.wait_refreshed(1)
    assert p.locator("#pods-table tbody tr").count() == total - 10
    assert "page=2" in p.url
    p.screenshot(path=shot("pods-page-2.png"), full_page=True)
    assert page.errors == []


def test_the_overview_cards_come_from_the_summary_and_list_the_firing_alert(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/")
    cards = {k: p.inner_text(f'#cards [data-card="{k}"]') for k in ("nodes", "pods", "model-servers", "cpu", "memory", "alerts")}
    assert "3 / 3" in cards["nodes"] and "all reporting" in cards["nodes"]
    assert f"Running {demo['pods']}" in cards["pods"]
    assert "vLLM 1" in cards["model-servers"] and "SGLang 1" in cards["model-servers"]
    # Requests are recorded by the demo: the cards compare use with them, not only with capacity.
    assert "of requests" in cards["cpu"] and "of capacity requested" in cards["cpu"]
    # The first node's two GPUs, one per model server, summed (vLLM's alone is over 90 % busy).
    assert re.match(r"GPU\n1\d\d\.\d %", p.inner_text('#cards [data-card="gpu"]'))
    assert "1 critical" in cards["alerts"]
    # loaddemo evaluates the rules: the model server's GPU is over 90 % busy, and that fires.
    # (A cart pod's OOM kill in the last 10 minutes may be firing too; pending ones are not listed.)
    states = p.locator("#alerts tbody tr").evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert states and set(states) == {"firing"}
    gpu = p.locator("#alerts tbody tr", has_text="PodGPUUtilisationHigh")
    assert "ml/vllm-" in gpu.inner_text()
    p.click('#cards [data-card="alerts"]')
    p.wait_for_url(re.compile(r"/views/alerts/"))
    page.wait_refreshed(1)
    assert page.errors == []


def test_the_model_servers_view_lists_each_server_with_its_figures(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/views/model-servers/")
    heads = p.locator("#rows thead th").all_inner_texts()
    assert heads[:6] == ["Server", "Namespace", "Kind", "Engine", "Model", "Replicas"]
    assert {"Tokens/s", "Running", "Waiting", "KV cache", "TTFT p95", "GPU"} <= set(heads)
    assert p.locator("#rows tbody tr").count() == 2
    # A bare pod is a server of its own; it opens as one (?kind=pod).
    sglang = p.locator("#rows tbody tr", has_text="sglang-qwen")
    assert "Pod" in sglang.inner_text() and "SGLang" in sglang.inner_text() and "Qwen" in sglang.inner_text()
    assert sglang.locator("a").first.get_attribute("href").endswith("/views/model-servers/ml/sglang-qwen/?kind=pod")
    row = p.locator("#rows tbody tr", has_text="meta-llama")
    cells = dict(zip(heads[5:], row.locator("td").all_inner_texts()[5:]))
    assert row.locator("td").nth(4).inner_text() == "meta-llama/Llama-3.1-8B-Instruct"
    assert cells["Replicas"] == "1 / 1"
    assert re.fullmatch(r"\d+(\.\d)? tokens/s", cells["Tokens/s"]), cells
    assert re.fullmatch(r"\d+ ms", cells["TTFT p95"]), cells
    assert re.fullmatch(r"\d+ %", cells["KV cache"]), cells
    assert re.match(r"9\d\.\d % · \d", cells["GPU"]), cells
    p.screenshot(path=shot("model-servers.png"), full_page=True)
    p.click("#rows tbody a >> text=sglang-qwen")
    p.wait_for_url(re.compile(r"/views/model-servers/ml/sglang-qwen/\?kind=pod"))
    page.wait_refreshed(1)
    assert "Pod sglang-qwen" in p.inner_text("#facts")
    assert page.charts() and all(int(c["points"]) > 0 for c in page.charts().values())
    assert page.errors == []


def test_a_model_server_charts_its_serving_series_and_redraws_for_a_new_window(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/views/model-servers/?window=3600")
    p.click("#rows tbody a >> text=vllm")
    p.wait_for_url(re.compile(r"/views/model-servers/ml/vllm/\?window=3600"))
    page.wait_refreshed(1)
    before = page.charts()
    assert {k.split(":", 1)[1] for k in before} == {"tokens", "requests", "rate", "kv", "ttft", "e2e"}
    assert all(int(c["points"]) > 0 for c in before.values()), before
    assert "Llama-3.1-8B" in p.inner_text("#facts")
    assert "ms" in p.inner_text('#cards [data-card="ttft"]')
    p.screenshot(path=shot("model-server.png"), full_page=True)
    p.select_option("#window", "86400")
    page.wait_refreshed(2)
    after = page.charts()
    for key in before:
        assert after[key]["window"] != before[key]["window"], key
        assert int(after[key]["points"]) > 0, key
    # (Whether the bucket the demo data starts in is partial depends on the minute the test runs
    # at, so partial buckets are checked by test_partial_buckets_are_marked instead.)
    assert "window=86400" in p.url
    # 30 days is past the raw retention: the charts show the days kept, and say so.
    p.select_option("#window", "2592000")
    page.wait_refreshed(3)
    assert p.is_hidden("#error"), p.inner_text("#error")
    assert "kept 7 days" in p.inner_text("#serving-note")
    assert all(int(c["points"]) > 0 for c in page.charts().values())
    assert page.errors == []


def test_the_alerts_view_shows_firing_alerts_and_a_history_tab(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/views/alerts/")
    heads = p.locator("#rows thead th").all_inner_texts()
    assert heads == ["State", "Severity", "Rule", "Entity", "Summary", "Value", "Since"]
    row = p.locator("#rows tbody tr").first
    assert row.get_attribute("data-state") == "firing"
    text = row.inner_text()
    assert "critical" in text and "PodGPUUtilisationHigh" in text and "ago" in text
    assert "keeps its GPU" in text
    p.screenshot(path=shot("alerts.png"), full_page=True)
    p.click("nav.tabs >> text=History")
    p.wait_for_url(re.compile(r"state=resolved"))
    page.wait_refreshed(1)
    # loaddemo evaluated the rules every 5 minutes: each cart OOM kill fired and resolved.
    heads = p.locator("#rows thead th").all_inner_texts()
    assert heads[-3:] == ["Started", "Ended", "Lasted"]
    resolved = p.locator("#rows tbody tr", has_text="ContainerOOMKilled")
    assert resolved.count() >= 1
    assert set(p.locator("#rows tbody tr").evaluate_all("rows => rows.map(r => r.dataset.state)")) == {"resolved"}
    assert "shop/cart-" in resolved.first.inner_text() and "ago" in resolved.first.inner_text()
    p.screenshot(path=shot("alerts-history.png"), full_page=True)
    assert p.get_attribute("nav.tabs a[aria-current=page]", "href") == "?state=resolved"
    assert page.errors == []


def test_the_right_sizing_view_lists_deployments_with_current_and_recommended_requests(demo: dict[str, Any], page: browser.WatchedPage) -> None:
    p = page.open(demo["url"] + "/views/rightsizing/?window=900")  # below the API's 1 h: clamped
    heads = p.locator("#rows thead th").all_inner_texts()
    assert heads[:3] == ["Deployment", "Namespace", "Replicas"]
    assert {"CPU request", "recommended", "CPU change", "Memory request", "Memory change"} <= set(heads)
    rows = p.locator("#rows tbody tr")
    assert rows.count() == 6
    # The demo's requests are twice the typical use: the recommendations free CPU.
    assert p.locator("#rows tbody .frees").count() >= 1
    assert re.search(r"\d", p.inner_text('#cards [data-card="cpu"]'))
    assert "p95 x 1.15" in p.inner_text("#rule")
    p.screenshot(path=shot("rightsizing.png"), full_page=True)
    # A Deployment's page shows its own recommendation in the same columns.
    p.click("#rows tbody a >> text=frontend")
    p.wait_for_url(re.compile(r"/namespaces/shop/deployments/frontend/"))
    page.wait_refreshed(1)
    assert "CPU request" in p.inner_text("#rightsizing") and "Rule:" in p.inner_text("#rightsizing")
    assert page.errors == []
