"""The dashboard at `/`: one server-rendered page; its data comes from the read API in the browser."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse


def dashboard(request: HttpRequest) -> HttpResponse:
    # The page itself holds no data, but without a session its API calls would all fail.
    if not settings.ALLOW_ANONYMOUS_READS and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    return render(request, "metrics/dashboard.html")
