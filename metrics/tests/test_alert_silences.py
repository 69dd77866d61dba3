"""Label matchers: Alertmanager's =, !=, =~, !~ with anchored regexes, and their errors."""

from __future__ import annotations

import pytest

from metrics.alerts.silences import MatcherError, parse_matchers


def matches(text: str, labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in parse_matchers(text))


LABELS = {"alertname": "PodCPUHigh", "namespace": "shop", "pod": "web-1", "severity": "warning"}


@pytest.mark.parametrize(("text", "expected"), [
    ('alertname="PodCPUHigh"', True),
    ('alertname="PodCPUHigh", namespace="pay"', False),
    ('namespace!="pay"', True),
    ('namespace=~"sh.p|pay"', True),
    ('namespace=~"sh"', False),  # anchored: the whole value must match
    ('pod!~"debug-.*"', True),
    ('pod!~"web-.*"', False),
    ('team=""', True),  # a missing label is an empty one
    ('{severity="warning",pod=~"web-\\\\d"}', True),
    ('summary="say \\"hi\\""', False),
])
def test_matchers_match_like_alertmanager(text: str, expected: bool) -> None:
    assert matches(text, LABELS) is expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "At least one matcher"),
    ("alertname=PodCPUHigh", "Cannot read a matcher"),
    ('alertname=="x"', "Cannot read a matcher"),
    ('pod=~"(unclosed"', "not a regular expression"),
    ('a="1" b="2"', "Cannot read a matcher"),
])
def test_a_bad_matcher_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(MatcherError, match=message):
        parse_matchers(text)


def test_receivers_may_have_no_matchers() -> None:
    assert parse_matchers("", allow_empty=True) == []
