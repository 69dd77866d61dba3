"""gunicorn's settings for every way kubemonitor is served: the image, compose, k8s, scripts/run.sh.

gunicorn reads ./gunicorn.conf.py from its working directory (/app in the image, the repository
for scripts/run.sh and the tests); command-line options still win.

The worker reads each whole request without blocking before a thread runs the application, so a
slow or stalled client never holds a worker (monitor_site/gunicorn_worker.py, issue 8). One thread
per worker process keeps the sync worker's model: one request at a time per process, one database
connection each; WEB_CONCURRENCY processes, as before.
"""

worker_class = "monitor_site.gunicorn_worker.BufferingWorker"
threads = 1
