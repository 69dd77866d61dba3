"""The installation's routes without alerting's and right-sizing's APIs: for the dashboard's
optional-view tests."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from metrics import urls as metrics_urls
from metrics.api.urls import urlpatterns as api_urlpatterns

_api = [p for p in api_urlpatterns if "alert" not in str(p.pattern) and "rightsizing" not in str(p.pattern)]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(_api)),
    *[p for p in metrics_urls.urlpatterns if str(p.pattern) != "api/"],
]
