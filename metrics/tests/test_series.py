"""metrics.series: windows and steps, and series equal to sums computed by hand, in every source."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from metrics import rollups, series
from metrics.models import PodSample
from metrics.series import Entity, SeriesError, resolve_window
from metrics.tests.factories import reset_rollups
from metrics.tests.read_helpers import expected_buckets, make_node, make_pod, node_rows, pod_rows

NOW = datetime(2026, 11, 22, 12, 0, 7, tzinfo=dt_timezone.utc)


# --- windows and steps -------------------------------------------------------------------------


def test_it_rejects_a_negative_window():
    with pytest.raises(SeriesError) as exc:
        resolve_window(window=-5, now=NOW)
    assert exc.value.param == "window"


def test_it_rejects_a_zero_window():
    with pytest.raises(SeriesError) as exc:
        resolve_window(window=0, now=NOW)
    assert exc.value.param == "window"


def test_it_rejects_a_window_longer_than_the_hourly_retention(settings):
    settings.RETENTION_1H_DAYS = 365
    with pytest.raises(SeriesError) as exc:
        resolve_window(window=366 * 86400, now=NOW)
    assert exc.value.param == "window"


def test_it_rejects_start_after_end():
    with pytest.raises(SeriesError) as exc:
        resolve_window(start=NOW, end=NOW - timedelta(hours=1), now=NOW)
    assert exc.value.param == "start"


def test_it_rejects_start_equal_to_end():
    with pytest.raises(SeriesError) as exc:
        resolve_window(start=NOW, end=NOW, now=NOW)
    assert exc.value.param == "start"


def test_it_rejects_window_mixed_with_start():
    with pytest.raises(SeriesError) as exc:
        resolve_window(window=60, start=NOW - timedelta(hours=1), now=NOW)
    assert exc.value.param == "window"


def test_it_rejects_end_without_start():
    with pytest.raises(SeriesError) as exc:
        resolve_window(end=NOW, now=NOW)
    assert exc.value.param == "start"


def test_it_rejects_a_step_giving_too_many_points():
    with pytest.raises(SeriesError) as exc:
        resolve_window(window=86400, step=1, now=NOW)
    assert exc.value.param == "step"


def test_it_rejects_a_zero_step():
    with pytest.raises(SeriesError) as exc:
        resolve_window(window=3600, step=0, now=NOW)
    assert exc.value.param == "step"


def test_it_refuses_raw_data_older_than_raw_retention(settings):
    settings.RETENTION_RAW_DAYS = 7
    with pytest.raises(SeriesError) as exc:
        resolve_window(window=8 * 86400, step=90, now=NOW)
    assert exc.value.param == "step"
    assert "multiple of 60" in exc.value.message


def test_it_refuses_minute_rollups_older_than_their_retention(settings):
    settings.RETENTION_1M_DAYS = 30
    with pytest.raises(SeriesError) as exc:
        resolve_window(window=40 * 86400, step=600, now=NOW)
    assert exc.value.param == "step"
    assert "multiple of 3600" in exc.value.message


def test_it_refuses_a_window_older_than_every_retention(settings):
    settings.RETENTION_1H_DAYS = 365
    with pytest.raises(SeriesError) as exc:
        resolve_window(start=NOW - timedelta(days=400), end=NOW - timedelta(days=399), now=NOW)
    assert exc.value.param == "start"


@pytest.mark.parametrize(
    "window, step, source",
    [(3600, 15, "raw"), (6 * 3600, 120, "1m"), (86400, 300, "1m"), (7 * 86400, 3600, "1h"),
     (30 * 86400, 10800, "1h")],
)
def test_it_picks_a_nice_step_for_at_most_about_300_points(window, step, source):
    w = resolve_window(window=window, now=NOW)
    assert (w.step, w.source) == (step, source)
    assert w.points <= 301


def test_it_widens_the_window_to_whole_steps():
    w = resolve_window(window=3600, step=60, now=NOW)
    assert w.start == datetime(2026, 11, 22, 11, 0, tzinfo=dt_timezone.utc)
    assert w.end == datetime(2026, 11, 22, 12, 1, tzinfo=dt_timezone.utc)
    assert w.points == 61


@pytest.mark.parametrize("step, source", [(10, "raw"), (90, "raw"), (60, "1m"), (300, "1m"), (3600, "1h"), (86400, "1h")])
def test_it_reads_the_rollup_that_divides_the_step(step, source):
    assert resolve_window(window=86400, step=step, now=NOW).source == source


# --- series equal hand-computed sums -----------------------------------------------------------


@pytest.fixture
def cluster(db):
    return _build_cluster()


@pytest.fixture
def refreshed_cluster(transactional_db):
    # refresh() commits as it goes, hence the transactional database; the rollups outlive
    # Django's flush, hence the resets.
    reset_rollups()
    data = _build_cluster()
    result = rollups.refresh()
    assert result.skipped is None
    yield data
    reset_rollups()


def _build_cluster():
    """Two nodes sampled every 10 s and every 30 s, two namespaces, one Deployment spanning both
    nodes, two hours of data ending an hour ago."""
    now = timezone.now()
    start = series._floor(now - timedelta(hours=3), 3600)
    end = start + timedelta(hours=2)
    a = make_node("node-a.example", cpu_cores=8)
    b = make_node("node-b.example", cpu_cores=4)
    web1 = make_pod("web-1", "shop", a, deployment="web", cpu_limit=0.5, memory_limit=512 * 1024**2)
    web2 = make_pod("web-2", "shop", b, deployment="web")
    db0 = make_pod("db-0", "shop", a)
    mon = make_pod("mon-1", "ops", b, deployment="mon")
    rows = {
        "web-1": pod_rows(web1, start, end, 10, seed=1),
        "web-2": pod_rows(web2, start, end, 30, seed=2),
        "db-0": pod_rows(db0, start, end, 10, seed=3),
        "mon-1": pod_rows(mon, start, end, 30, seed=4),
        "node-a": node_rows(a, start, end, 10),
        "node-b": node_rows(b, start, end, 30),
    }
    return {"start": start, "end": end, "a": a, "b": b, "web1": web1, "rows": rows}


STEPS = [(30, "raw"), (60, "1m"), (300, "1m"), (3600, "1h")]


def _check(points, expected, fields=("cpu_millicores", "memory_working_set_bytes",
                                     "net_rx_bytes_per_second", "disk_read_bytes_per_second")):
    by_time = {p["time"]: p for p in points}
    assert set(expected) <= set(by_time)
    for b, values in expected.items():
        for name in fields:
            assert by_time[b][name] == pytest.approx(values[name], rel=1e-9), (b, name)
    # Buckets without samples are nulls, never zeros.
    for t, p in by_time.items():
        if t not in expected:
            assert p["cpu_millicores"] is None


def _window(cluster, step):
    return resolve_window(start=cluster["start"], end=cluster["end"], step=step)


@pytest.mark.parametrize("step, source", STEPS)
def test_a_namespace_series_is_the_sum_of_its_pods_over_the_bucket_length(cluster, step, source):
    w = _window(cluster, step)
    assert w.source == source
    points = series.series(Entity("namespace", ("shop",)), w)
    rows = cluster["rows"]["web-1"] + cluster["rows"]["web-2"] + cluster["rows"]["db-0"]
    expected = expected_buckets(rows, w.start, step, aggregate=True)
    assert len(points) == w.points == 7200 // step
    _check(points, expected)


@pytest.mark.parametrize("step, source", STEPS)
def test_a_deployment_series_spans_pods_on_nodes_with_different_intervals(cluster, step, source):
    w = _window(cluster, step)
    points = series.series(Entity("deployment", ("shop", "web")), w)
    rows = cluster["rows"]["web-1"] + cluster["rows"]["web-2"]
    _check(points, expected_buckets(rows, w.start, step, aggregate=True))
    # 10 s samples of 0.05..0.15 CPU-s per s plus 30 s samples of the same: between 100 and 300 m.
    assert all(99.99 <= p["cpu_millicores"] <= 300.01 for p in points)


@pytest.mark.parametrize("step, source", STEPS)
def test_a_pod_series_is_its_time_weighted_average(cluster, step, source):
    web1 = cluster["web1"]
    w = _window(cluster, step)
    points = series.series(Entity("pod", (web1.pk,), 8.0, cluster["a"].memory_total_bytes), w)
    _check(points, expected_buckets(cluster["rows"]["web-1"], w.start, step, aggregate=False))
    p = points[0]
    assert p["cpu_limit_millicores"] == pytest.approx(500.0)
    assert p["cpu_percent_of_limit"] == pytest.approx(p["cpu_millicores"] / 5.0)
    assert p["memory_limit_bytes"] == pytest.approx(512 * 1024**2)
    assert p["cpu_percent_of_capacity"] == pytest.approx(p["cpu_millicores"] / 80.0)


@pytest.mark.parametrize("step, source", STEPS)
def test_a_node_series_has_its_capacity_and_percentages(cluster, step, source):
    w = _window(cluster, step)
    points = series.series(Entity("node", (cluster["b"].pk,)), w)
    _check(points, expected_buckets(cluster["rows"]["node-b"], w.start, step, aggregate=False))
    p = points[0]
    assert p["cpu_capacity_millicores"] == pytest.approx(4000.0)
    assert p["cpu_percent_of_capacity"] == pytest.approx(p["cpu_millicores"] / 40.0)
    assert p["cpu_limit_millicores"] is None


def test_a_pod_without_limits_has_null_limit_fields(cluster):
    web2 = cluster["rows"]["web-2"][0].pod
    points = series.series(Entity("pod", (web2.pk,)), _window(cluster, 60))
    assert points[0]["cpu_millicores"] is not None
    assert points[0]["cpu_limit_millicores"] is None
    assert points[0]["cpu_percent_of_limit"] is None
    assert points[0]["memory_percent_of_capacity"] is None


def test_raw_and_rollups_agree_on_the_same_buckets(cluster):
    w = _window(cluster, 3600)
    entity = Entity("namespace", ("shop",))
    from_1h = series.series(entity, w)
    from_raw = series.series(entity, series.Window(w.start, w.end, 3600, "raw"))
    from_1m = series.series(entity, series.Window(w.start, w.end, 3600, "1m"))
    for a, b, c in zip(from_1h, from_raw, from_1m):
        assert a["cpu_millicores"] == pytest.approx(b["cpu_millicores"]) == pytest.approx(c["cpu_millicores"])
        assert a["memory_working_set_max_bytes"] == b["memory_working_set_max_bytes"]


def test_a_step_shorter_than_the_sample_interval_spreads_each_sample_over_its_buckets(cluster):
    w = _window(cluster, 10)
    points = series.series(Entity("deployment", ("ops", "mon")), w)
    # mon-1 reports every 30 s: each 30 s sample counts a third in each of its three 10 s buckets,
    # so every point has data at that sample's true rate.
    samples = {r.time: r.cpu_seconds / r.interval_seconds for r in cluster["rows"]["mon-1"]}
    assert all(p["cpu_millicores"] is not None for p in points)
    for p in points:
        start = p["time"] - timedelta(seconds=(p["time"] - cluster["start"]).total_seconds() % 30)
        assert p["cpu_millicores"] == pytest.approx(samples[start] * 1000, rel=1e-9)
        assert p["coverage"] == pytest.approx(1.0)


def test_the_newest_bucket_counts_only_its_elapsed_part(db):
    node = make_node("n1")
    pod = make_pod("p", "ns", node, deployment="d")
    now = timezone.now()
    bucket = series._floor(now, 3600)
    if (now - bucket).total_seconds() < 60:
        bucket -= timedelta(hours=1)  # keep at least a minute elapsed
    pod_rows(pod, bucket, bucket + timedelta(seconds=30), 10)
    w = resolve_window(start=bucket, end=now, step=3600)
    point = series.series(Entity("namespace", ("ns",)), w, now=now)[0]
    elapsed = (now - bucket).total_seconds()
    cpu = sum(PodSample.objects.filter(pod=pod).values_list("cpu_seconds", flat=True))
    assert point["cpu_millicores"] == pytest.approx(cpu * 1000 / min(3600, elapsed), rel=1e-3)


@pytest.mark.parametrize("step", [60, 300, 3600])
def test_materialized_rollups_give_the_same_sums(refreshed_cluster, step):
    cluster = refreshed_cluster
    w = _window(cluster, step)
    rows = cluster["rows"]
    _check(
        series.series(Entity("namespace", ("shop",)), w),
        expected_buckets(rows["web-1"] + rows["web-2"] + rows["db-0"], w.start, step, aggregate=True),
    )
    _check(
        series.series(Entity("deployment", ("shop", "web")), w),
        expected_buckets(rows["web-1"] + rows["web-2"], w.start, step, aggregate=True),
    )
    _check(
        series.series(Entity("pod", (cluster["web1"].pk,)), w),
        expected_buckets(rows["web-1"], w.start, step, aggregate=False),
    )
    _check(
        series.series(Entity("node", (cluster["a"].pk,)), w),
        expected_buckets(rows["node-a"], w.start, step, aggregate=False),
    )


# --- latest usage ------------------------------------------------------------------------------


def test_latest_pods_give_the_newest_sample_within_the_lookback(db):
    node = make_node("n1", cpu_cores=2)
    fresh = make_pod("fresh", "ns", node, cpu_limit=1.0)
    stale = make_pod("stale", "ns", node)
    now = timezone.now()
    pod_rows(fresh, now - timedelta(seconds=60), now, 10)
    pod_rows(stale, now - timedelta(hours=1), now - timedelta(minutes=30), 10)
    latest = series.latest_pods([fresh, stale])
    assert set(latest) == {fresh.pk}
    usage = latest[fresh.pk]
    assert usage["time"] >= now - timedelta(seconds=11)
    assert usage["interval_seconds"] == 10
    assert usage["cpu_percent_of_limit"] == pytest.approx(usage["cpu_millicores"] / 10.0)
    assert usage["cpu_percent_of_capacity"] == pytest.approx(usage["cpu_millicores"] / 20.0)


def test_latest_groups_read_the_newest_complete_minute(db):
    node = make_node("n1")
    a = make_pod("a", "ns", node, deployment="d")
    b = make_pod("b", "ns", node, deployment="d")
    now = timezone.now()
    minute = series._floor(now - series.COMPLETE_BUCKET_DELAY, 60)
    rows = pod_rows(a, minute - timedelta(minutes=3), now, 10) + pod_rows(b, minute - timedelta(minutes=3), now, 10)
    in_minute = [r for r in rows if minute <= r.time < minute + timedelta(seconds=60)]
    latest = series.latest_groups("namespace", [("ns",), ("nothing",)], now=now)
    assert set(latest) == {("ns",)}
    assert latest[("ns",)]["time"] == minute
    assert latest[("ns",)]["cpu_millicores"] == pytest.approx(sum(r.cpu_seconds for r in in_minute) * 1000 / 60)
    dep = series.latest_groups("deployment", [("ns", "d")], now=now)
    assert dep[("ns", "d")]["cpu_millicores"] == pytest.approx(latest[("ns",)]["cpu_millicores"])
