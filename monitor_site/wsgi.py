"""WSGI entry point (gunicorn monitor_site.wsgi).

gunicorn imports this module in each worker after the fork (no --preload), so the garbage
collector settings below are per worker. An ingest batch allocates tens of thousands of
short-lived objects that reference counting frees on its own; with the default gen-0 threshold
(700) the cyclic collector still runs several times per request and now and then walks the
whole heap of Django's start-up objects. Freezing those objects and collecting gen 0 every
20,000 allocations saved about 1.5 ms of CPU per 110-pod batch in bench/ingest.py --phases.
Set WSGI_GC_TUNING=0 to keep Python's defaults.
"""
import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")

application = get_wsgi_application()

if os.environ.get("WSGI_GC_TUNING", "1") != "0":
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
