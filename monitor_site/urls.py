"""Top-level routes: the API under /api/, health probes, the admin."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("metrics.urls")),
]

# JSON for an unmatched /api/ path, Django's page elsewhere (metrics/notfound.py).
handler404 = "metrics.notfound.not_found"
