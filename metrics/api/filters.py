"""FilterSets of the read API."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from metrics.models import PHASES, Pod


class LabelSelectorField(forms.Field):
    """`label=app=web` (equality) or `label=app` (key present); repeat to require several."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[tuple[str, str | None]]:
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        selectors = []
        for item in value:
            key, sep, val = str(item).partition("=")
            key = key.strip()
            # PostgreSQL's jsonb cannot hold NUL, so such a selector could only fail in the query.
            if "\x00" in str(item):
                raise forms.ValidationError("Null characters are not allowed.", code="null_characters")
            if not key:
                raise forms.ValidationError(
                    f"{item!r} is not a label selector; use key=value or key.", code="invalid"
                )
            selectors.append((key, val if sep else None))
        return selectors


@extend_schema_field(serializers.ListField(child=serializers.CharField()))
class LabelSelectorFilter(django_filters.Filter):
    field_class = LabelSelectorField

    def filter(self, qs: QuerySet, value: list[tuple[str, str | None]]) -> QuerySet:
        for key, val in value or []:
            qs = qs.filter(labels__has_key=key) if val is None else qs.filter(labels__contains={key: val})
        return qs


MODEL_SERVER_CHOICES = [("vllm", "vLLM"), ("sglang", "SGLang")]


def model_server_param(params: Any) -> str | None:
    """`?model_server=` of the lists built from grouped pods (no FilterSet there); 400 when bad."""
    value = params.get("model_server")
    if value is None:
        return None
    if value not in dict(MODEL_SERVER_CHOICES):
        raise serializers.ValidationError({"model_server": ["Must be vllm or sglang."]})
    return str(value)


class PodFilterSet(django_filters.FilterSet):
    namespace = django_filters.CharFilter(field_name="namespace")
    node = django_filters.CharFilter(field_name="node__name", label="Node name")
    deployment = django_filters.CharFilter(field_name="deployment")
    label = LabelSelectorFilter(
        label="Label selector, key=value or key; repeat the parameter to require all of them"
    )
    phase = django_filters.ChoiceFilter(field_name="phase", choices=PHASES, label="Pod phase")
    # A choice rather than a BooleanFilter: that one ignores a value it cannot read instead of
    # answering 400, so `?ready=no` would silently list every pod.
    ready = django_filters.TypedChoiceFilter(
        field_name="ready", choices=[("true", "true"), ("false", "false")], coerce=lambda v: v == "true",
        label="Pod readiness: true or false",
    )
    model_server = django_filters.ChoiceFilter(
        field_name="model_server", choices=MODEL_SERVER_CHOICES,
        label="Only pods serving a model with this server (vllm or sglang)",
    )

    class Meta:
        model = Pod
        fields = ["namespace", "node", "deployment", "label", "phase", "ready", "model_server"]
