"""Bad ingest input: always a 4xx naming the field, nothing stored, never a 500."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any, Callable

import pytest

from metrics.models import Node, NodeSample, Pod, PodSample
from metrics.tests.factories import NodeBatches, rfc3339, tick
from metrics.tests.ingest_helpers import post

pytestmark = pytest.mark.django_db


def good() -> dict[str, Any]:
    return NodeBatches("worker-1", pods=5, seed=2).batch(tick(30))


def nothing_stored() -> bool:
    return not (Node.objects.exists() or NodeSample.objects.exists() or Pod.objects.exists() or PodSample.objects.exists())


def set_(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets batch[path] (dotted, with [i] indexes) to value."""

    def mutate(batch: dict[str, Any]) -> None:
        *parents, last = _parts(path)
        target: Any = batch
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def del_(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(batch: dict[str, Any]) -> None:
        *parents, last = _parts(path)
        target: Any = batch
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


def _parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.replace("]", "").split("."):
        name, *indexes = piece.split("[")
        parts.append(name)
        parts.extend(int(i) for i in indexes)
    return parts


BIG = 2**63


CASES = [
    # (id, mutation, field path named in the answer)
    ("unknown top-level key", set_("nodename", "x"), "nodename"),
    ("unknown pod key", set_("pods[3].cpu_usage", 1), "pods[3].cpu_usage"),
    ("unknown container key", set_("pods[3].containers[0].foo", 1), "pods[3].containers[0].foo"),
    ("net keys on a container", set_("pods[1].containers[0].net_rx_bytes", 1), "pods[1].containers[0].net_rx_bytes"),
    ("unknown node_usage key", set_("node_usage.load1", 0.5), "node_usage.load1"),
    ("unknown collector key", set_("collector.hostname", "x"), "collector.hostname"),
    ("missing node", del_("node"), "node"),
    ("missing time", del_("time"), "time"),
    ("missing required usage key", del_("node_usage.cpu_seconds"), "node_usage.cpu_seconds"),
    ("missing pod usage key", del_("pods[2].net_rx_bytes"), "pods[2].net_rx_bytes"),
    ("missing container usage key", del_("pods[1].containers[1].disk_read_bytes"), "pods[1].containers[1].disk_read_bytes"),
    ("missing deployment key", del_("pods[0].deployment"), "pods[0].deployment"),
    ("number as a string", set_("pods[0].cpu_seconds", "0.5"), "pods[0].cpu_seconds"),
    ("boolean as a number", set_("pods[0].cpu_seconds", True), "pods[0].cpu_seconds"),
    ("negative number", set_("node_usage.net_rx_bytes", -1), "node_usage.net_rx_bytes"),
    ("float for a byte count", set_("pods[0].memory_working_set_bytes", 1.5), "pods[0].memory_working_set_bytes"),
    ("float for a count", set_("pods[0].containers[0].oom_kills", 1.0), "pods[0].containers[0].oom_kills"),
    ("bigger than bigint", set_("pods[0].disk_read_bytes", BIG), "pods[0].disk_read_bytes"),
    ("huge integer", set_("pods[0].disk_read_bytes", 10**40), "pods[0].disk_read_bytes"),
    ("restarts beyond int", set_("pods[1].containers[0].restarts", 2**31), "pods[1].containers[0].restarts"),
    ("interval zero", set_("interval_seconds", 0), "interval_seconds"),
    ("interval over an hour", set_("interval_seconds", 3601), "interval_seconds"),
    ("pod interval negative", set_("pods[0].interval_seconds", -10.0), "pods[0].interval_seconds"),
    ("time without offset", set_("time", "2026-11-22T22:40:10"), "time"),
    ("time as a number", set_("time", 1763851210), "time"),
    ("date only", set_("time", "2026-11-22"), "time"),
    ("time garbage", set_("time", "yesterday"), "time"),
    ("time far in the future", set_("time", rfc3339(tick(-3600))), "time"),
    ("time older than raw retention", set_("time", rfc3339(tick(8 * 86400))), "time"),
    ("unknown qos", set_("pods[0].qos", "Premium"), "pods[0].qos"),
    ("label value not a string", set_("pods[0].labels", {"app": 1}), 'pods[0].labels["app"]'),
    ("label key too long", set_("pods[0].labels", {"k" * 400: "v"}), 'pods[0].labels["' + "k" * 400 + '"](key)'),
    ("labels not an object", set_("pods[0].labels", ["app"]), "pods[0].labels"),
    ("empty node name", set_("node", ""), "node"),
    ("node name too long", set_("node", "n" * 254), "node"),
    ("uid too long", set_("pods[0].uid", "u" * 65), "pods[0].uid"),
    ("container image too long", set_("pods[0].containers[0].image", "i" * 513), "pods[0].containers[0].image"),
    ("pods not a list", set_("pods", {"a": 1}), "pods"),
    ("pod not an object", set_("pods[2]", "junk"), "pods[2]"),
    ("nested junk", set_("pods[2].containers", [[[{}]]]), "pods[2].containers[0]"),
    ("node_usage null", set_("node_usage", None), "node_usage"),
    ("duplicate pod uid", lambda b: b["pods"][3].update(uid=b["pods"][1]["uid"]), "pods[3].uid"),
    (
        "duplicate container name",
        lambda b: b["pods"][1]["containers"][1].update(name=b["pods"][1]["containers"][0]["name"]),
        "pods[1].containers[1].name",
    ),
    ("cgroup version 3", set_("collector.cgroup_version", 3), "collector.cgroup_version"),
    ("source without ok", del_("collector.sources.cgroup.ok"), 'collector.sources["cgroup"].ok'),
    ("warnings not strings", set_("warnings", [1]), "warnings[0]"),
    # PostgreSQL text and jsonb cannot hold NUL: refused up front, not a database error.
    ("NUL in a pod name", set_("pods[0].name", "a\x00b"), "pods[0].name"),
    ("NUL in a label value", set_("pods[0].labels", {"app": "\x00"}), 'pods[0].labels["app"]'),
    ("NUL in a label key", set_("pods[0].labels", {"a\x00": "v"}), 'pods[0].labels["a\x00"](key)'),
    ("NUL in a warning", set_("warnings", ["x\x00"]), "warnings[0]"),
]


@pytest.mark.parametrize(("mutate", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_400_naming_the_field_and_stores_nothing(client, ingest_token, mutate, field):
    batch = good()
    mutate(batch)

    response = post(client, ingest_token, batch)

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert field in errors, errors
    assert all(isinstance(m, str) and m for messages in errors.values() for m in messages)
    assert nothing_stored()


def test_an_unknown_key_is_called_unknown(client, ingest_token):
    batch = good()
    batch["pods"][3]["containers"][0]["foo"] = 1

    response = post(client, ingest_token, batch)

    assert response.json() == {"errors": {"pods[3].containers[0].foo": ["Unknown field."]}}


def test_every_bad_field_is_named_not_just_the_first(client, ingest_token):
    batch = good()
    batch["pods"][0]["cpu_seconds"] = -1
    batch["pods"][4]["containers"][0]["extra"] = True
    del batch["node_usage"]["fs_used_bytes"]

    errors = post(client, ingest_token, batch).json()["errors"]

    assert set(errors) == {"pods[0].cpu_seconds", "pods[4].containers[0].extra", "node_usage.fs_used_bytes"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"{", "Malformed JSON"),
        (b'{"node": "a",', "Malformed JSON"),
        (b"[1, 2]", "object"),
        (b"null", "object"),
        (b'"just a string"', "object"),
        (b"\xff\xfe\x00garbage", "Malformed JSON"),
    ],
)
def test_malformed_json_gets_400_on_the_body(client, ingest_token, body, message):
    response = post(client, ingest_token, body)

    assert response.status_code == 400
    assert message in response.json()["errors"]["body"][0]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused(client, ingest_token, literal):
    body = json.dumps(good()).replace('"cpu_capacity_cores": 16.0', f'"cpu_capacity_cores": {literal}').encode()

    response = post(client, ingest_token, body)

    assert response.status_code == 400
    assert "node_usage.cpu_capacity_cores" in response.json()["errors"]


def test_optional_metrics_and_nulls_are_accepted(client, ingest_token):
    batch = good()
    pod = batch["pods"][0]
    pod.update(qos=None, owner_kind=None, owner_name=None, deployment=None, labels={}, gpu_utilization_percent=35.5, gpu_memory_bytes=2**30)
    pod["containers"][0].update(id="", image="", gpu_utilization_percent=None)
    batch["pods"][1]["containers"] = []
    del batch["collector"]
    del batch["warnings"]

    assert post(client, ingest_token, batch).status_code == 201

    stored = Pod.objects.get(uid=pod["uid"])
    assert (stored.qos, stored.owner_kind, stored.deployment, stored.labels) == ("", "", None, {})
    assert PodSample.objects.get(pod=stored).gpu_memory_bytes == 2**30


def test_a_batch_without_pods_stores_the_node(client, ingest_token):
    batch = good()
    batch["pods"] = []

    assert post(client, ingest_token, batch).status_code == 201
    assert NodeSample.objects.count() == 1


def test_a_time_with_another_offset_is_converted_to_utc(client, ingest_token):
    end = tick(60)
    batch = good()
    batch["time"] = (end + timedelta(hours=2)).isoformat().replace("+00:00", "+02:00")

    assert post(client, ingest_token, batch).status_code == 201
    assert NodeSample.objects.get().time == end - timedelta(seconds=10)


def test_fuzzed_bodies_never_cause_a_server_error(client, ingest_token):
    # Truncations and byte flips of a valid batch: each answer is a 201/200 or a 4xx naming
    # something; the test client re-raises any exception a view lets escape.
    rng = random.Random(1234)
    body = json.dumps(NodeBatches("worker-1", pods=3, seed=5).batch(tick(30))).encode()
    for _ in range(150):
        mutated = bytearray(body)
        action = rng.random()
        if action < 0.3:
            mutated = mutated[: rng.randrange(len(mutated))]
        elif action < 0.7:
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        else:
            position = rng.randrange(len(mutated))
            junk = rng.choice([b"null", b"-1", b"1e999", b'"x"', b"[]", b"{}", b"99999999999999999999999", b"true"])
            mutated[position:position] = junk
        response = post(client, ingest_token, bytes(mutated))
        assert response.status_code in (200, 201, 400), (response.status_code, response.content)
        if response.status_code == 400:
            assert response.json()["errors"]


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [path] + [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [path] + [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    return [path]


def test_junk_in_any_field_never_causes_a_server_error(client, ingest_token):
    # Structural fuzzing: any value anywhere replaced by junk of another kind or an edge value.
    rng = random.Random(99)
    junk = [None, -1, 0, 1.5, 2**63, 2**63 - 1, 10**30, 1e308, -0.0, "", "x" * 2000, "\x00", "é✓",
            True, [], {}, [None], {"a": {"b": [1]}}, "2026-11-22T22:40:10Z"]
    base = NodeBatches("worker-1", pods=3, seed=5).batch(tick(30))
    leaves = [leaf for leaf in _leaves(base) if leaf]
    seen: set[int] = set()
    for i in range(200):
        batch = json.loads(json.dumps(base))
        # A new interval each time, so that valid junk reaches the database rather than the
        # duplicate check.
        batch["time"] = rfc3339(tick(30) - timedelta(seconds=10 * i))
        path = rng.choice(leaves)
        target: Any = batch
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = rng.choice(junk)
        response = post(client, ingest_token, batch)
        assert response.status_code in (200, 201, 400), (path, response.status_code, response.content)
        seen.add(response.status_code)
    assert {201, 400} <= seen  # both valid junk (stored) and invalid junk (refused) were tried


def test_integers_are_accepted_where_numbers_are_expected(client, ingest_token):
    batch = good()
    batch["interval_seconds"] = 10
    batch["pods"][0].update(cpu_seconds=2, cpu_limit_cores=1, interval_seconds=10)
    batch["pods"][1]["containers"][0].update(cpu_seconds=0, psi_cpu_some_seconds=1)
    batch["node_usage"]["cpu_capacity_cores"] = 16

    assert post(client, ingest_token, batch).status_code == 201

    sample = PodSample.objects.get(pod__uid=batch["pods"][0]["uid"])
    assert (sample.cpu_seconds, sample.cpu_limit_cores, sample.interval_seconds) == (2.0, 1.0, 10.0)
    assert NodeSample.objects.get().cpu_capacity_cores == 16.0
