# syntax=docker/dockerfile:1
# kubemonitor images, one file, two targets:
#   docker build --target api       -t kubemonitor/api:1.0.0 .
#   docker build --target collector -t kubemonitor/collector:1.0.0 .
# Dependencies are built into virtualenvs in builder stages; the final stages copy only those
# virtualenvs and the code they run, so no compiler or pip cache ends up in an image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------ builders
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# A compiler only for dependencies that ship no wheel for this platform (an arm64 board, say).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

FROM builder AS api-deps
COPY requirements.txt .
RUN pip wheel --wheel-dir /wheels -r requirements.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels -r requirements.txt

FROM builder AS collector-deps
COPY collector/requirements.txt .
RUN pip wheel --wheel-dir /wheels -r requirements.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels -r requirements.txt

# The dashboard's chart library from package-lock.json (npm ci), served as static files.
FROM node:20-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# ------------------------------------------------------------------------------ api
FROM ${PYTHON_IMAGE} AS api
LABEL org.opencontainers.image.title="kubemonitor-api" \
      org.opencontainers.image.description="kubemonitor API server (Django REST Framework, gunicorn)" \
      org.opencontainers.image.source="https://github.com/kubemonitor/kubemonitor"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WEB_CONCURRENCY=2 \
    GUNICORN_TIMEOUT=30 \
    WHITENOISE_USE_FINDERS=false
# A fixed uid so Kubernetes' runAsUser/fsGroup and volume ownership can name it.
RUN groupadd --system --gid 10001 kubemonitor \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin kubemonitor \
 && install -d -o 10001 -g 10001 -m 0750 /run/kubemonitor \
 && install -d -o 10001 -g 10001 -m 0700 /run/kubemonitor-admin
COPY --from=api-deps /opt/venv /opt/venv
WORKDIR /app
COPY manage.py gunicorn.conf.py ./
COPY monitor_site ./monitor_site
COPY metrics ./metrics
COPY --from=assets /src/node_modules/uplot/dist ./node_modules/uplot/dist
# Static files are collected at build time and served by whitenoise from the image. The settings
# refuse to load without a SECRET_KEY; this throwaway one exists only during this RUN.
# STATIC_MANIFEST=1 because the manifest this step writes does not exist yet to switch it on.
RUN SECRET_KEY=collectstatic-only STATIC_MANIFEST=1 python manage.py collectstatic --noinput --verbosity 0 \
 && python -m compileall -q /app
USER 10001:10001
EXPOSE 8000
# No curl in the slim image; urllib raises on anything but a 2xx, so the exit code is the answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# Migrations run as their own command (`python manage.py migrate`: the compose `migrate` service,
# the Kubernetes Job), never on every replica's start.
CMD ["sh", "-c", "exec gunicorn monitor_site.wsgi -b 0.0.0.0:8000 -w ${WEB_CONCURRENCY} --timeout ${GUNICORN_TIMEOUT} --graceful-timeout 20 --keep-alive 5 --no-control-socket --access-logfile - --error-logfile -"]

# ------------------------------------------------------------------------------ collector
FROM ${PYTHON_IMAGE} AS collector
LABEL org.opencontainers.image.title="kubemonitor-collector" \
      org.opencontainers.image.description="kubemonitor node collector (reads host /proc and cgroups)" \
      org.opencontainers.image.source="https://github.com/kubemonitor/kubemonitor"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUBEMONITOR_PROC_ROOT=/host/proc \
    KUBEMONITOR_SYS_ROOT=/host/sys
COPY --from=collector-deps /opt/venv /opt/venv
WORKDIR /app
COPY collector ./collector
# (.dockerignore keeps collector/tests out.)
RUN python -m compileall -q /app
# Runs as root on purpose: it reads /proc/<pid>/net/dev and cgroup files of every user's
# processes on the host. The deployments drop every capability it does not need.
ENTRYPOINT ["python", "-m", "collector"]
