"""Admin pages for GPUs: the device inventory and the GPU sample hypertable.

GPU samples get the same treatment as the other sample tables (metrics/admin.py SampleAdmin):
read-only, the bounded paginator instead of COUNT(*), the date hierarchy from MIN/MAX(time), and
filters whose choices come from the small inventory tables.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from metrics import catalogue
from metrics.admin import InventoryFilter, NodeFilter, SampleAdmin
from metrics.models import GpuDevice, GpuSample


class GpuModelFilter(InventoryFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = GpuDevice.objects.order_by("name").values_list("name", flat=True).distinct()
        return [(n, n) for n in names[:200]]

    def filter_samples(self, queryset: QuerySet, value: str) -> QuerySet:
        if queryset.model is GpuDevice:
            return queryset.filter(name=value)
        return queryset.filter(device_id__in=GpuDevice.objects.filter(name=value).values("id"))


@admin.register(GpuDevice)
class GpuDeviceAdmin(admin.ModelAdmin):
    list_display = ("uuid", "node", "index", "name", "memory_total_bytes", "mig_mode", "parent_uuid",
                    "driver_version", "last_seen")
    list_select_related = ("node",)
    list_filter = (NodeFilter, GpuModelFilter, "mig_mode", "driver_version", "last_seen")
    search_fields = ("uuid", "name", "node__name", "parent_uuid")
    raw_id_fields = ("node",)
    date_hierarchy = "last_seen"


@admin.register(GpuSample)
class GpuSampleAdmin(SampleAdmin):
    # The catalogue's GPU device metrics (metrics/catalogue.py), then who held the device.
    list_display = ("time", "device", "node", "interval_seconds", *catalogue.sample_fields("gpu"),
                    "namespace", "pod_name", "container", "shared")
    list_select_related = ("device", "node")
    list_filter = (NodeFilter, GpuModelFilter, "shared")
    raw_id_fields = ("device", "node", "pod")
    search_fields = ("device__uuid", "node__name", "pod_name")
    search_help_text = "Device UUID, node name or pod name"

    def search_samples(self, queryset: QuerySet, term: str) -> QuerySet:
        # Names and UUIDs are matched in the inventory, then the samples filtered by id.
        devices = GpuDevice.objects.filter(uuid__icontains=term).values("id")
        nodes = GpuDevice.objects.filter(node__name__icontains=term).values("id")
        return (queryset.filter(device_id__in=devices) | queryset.filter(device_id__in=nodes)
                | queryset.filter(pod_name=term))
