"""Label matchers (Alertmanager's syntax: =, !=, =~, !~) for silences and receivers' routes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class MatcherError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")  # a missing label matches like an empty one
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        # Anchored like Alertmanager's: the regex must match the whole value.
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


def parse_matchers(text: str, allow_empty: bool = False) -> list[Matcher]:
    """'alertname="X", namespace=~"a|b"' -> matchers; raises MatcherError naming what is wrong."""
    text = (text or "").strip().strip("{}").strip()
    if not text:
        if allow_empty:
            return []
        raise MatcherError('At least one matcher, e.g. alertname="PodCPUHigh".')
    matchers: list[Matcher] = []
    position = 0
    while position < len(text):
        found = _MATCHER.match(text, position)
        if found is None:
            raise MatcherError(f'Cannot read a matcher at {text[position:position + 30]!r}; write name="value", '
                               'name!="value", name=~"regex" or name!~"regex", separated by commas.')
        name, op, raw = found.groups()
        value = re.sub(r"\\(.)", r"\1", raw)
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise MatcherError(f"{name}{op}: not a regular expression ({exc}).") from None
        matchers.append(Matcher(name, op, value))
        position = found.end()
    return matchers


def matches_all(matchers: Iterable[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


class Silences:
    """The silences active at one moment, parsed once per evaluation cycle."""

    def __init__(self, now: datetime) -> None:
        from metrics.alerts.models import Silence

        self.active: list[list[Matcher]] = []
        for silence in Silence.objects.filter(starts_at__lte=now, ends_at__gt=now):
            try:
                self.active.append(parse_matchers(silence.matchers))
            except MatcherError:
                continue  # the admin validates; a row written around it silences nothing

    def mutes(self, labels: dict[str, str]) -> bool:
        return any(matches_all(matchers, labels) for matchers in self.active)
