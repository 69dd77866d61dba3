"""Settings for the kubemonitor API server.

Every setting comes from the environment (django-environ), so the same image runs under docker
compose, in Kubernetes and on a laptop. `<NAME>_FILE` variants are read for secrets so that
Kubernetes Secrets and Docker secrets can be mounted as files.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is a convenience for development; real deployments set the environment.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def env_secret(name: str, default: str | None = None) -> str | None:
    """Return $NAME, or the contents of the file named by $NAME_FILE (Kubernetes/Docker secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


# scripts/run.sh keeps its state in var/: the private database's URL and the secret key. When
# the environment does not say otherwise, manage.py run by hand in the checkout finds them there,
# so the README's commands work as written next to a local run. Real environment variables win.
LOCAL_RUN_DIR = Path(os.environ.get("KUBEMONITOR_VAR_DIR") or BASE_DIR / "var")


def local_run_value(name: str) -> str | None:
    path = LOCAL_RUN_DIR / name
    try:
        return path.read_text().strip() or None
    except OSError:  # no local run here (or not ours to read)
        return None


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env_secret("SECRET_KEY") or local_run_value("secret-key") or ""
if not SECRET_KEY:
    if DEBUG or env.bool("CI", default=False) or os.environ.get("PYTEST_VERSION"):
        # Tests and local debugging need no secret; a production process refuses to start.
        SECRET_KEY = "insecure-development-key-do-not-use-in-production"
    else:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "metrics",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "metrics.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After AuthenticationMiddleware, as django-axes requires: refuses locked-out logins.
    "axes.middleware.AxesMiddleware",
    # Last, so that it sees the view's exception first: a database outage is a 503, not a 500.
    "metrics.outage.DatabaseOutageMiddleware",
    # Stored values whose sums overflow: a 422 naming the cause, not a 500.
    "metrics.overflow.DataOverflowMiddleware",
]

ROOT_URLCONF = "monitor_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "monitor_site.wsgi.application"

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL",
        default=local_run_value("database-url") or "postgres://postgres@127.0.0.1:5432/kubemonitor",
    ),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...)")
# A streaming replica of that database for the read API's reads (metrics/replica.py).
if env.str("READ_DATABASE_URL", default=""):
    DATABASES["replica"] = env.db_url("READ_DATABASE_URL")
    DATABASES["replica"].setdefault("CONN_MAX_AGE", DATABASES["default"]["CONN_MAX_AGE"])
    DATABASES["replica"].setdefault("CONN_HEALTH_CHECKS", True)
    # Never a test database of its own: in tests it is the replica of the default's.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    DATABASE_ROUTERS = ["metrics.replica.ReplicaRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first, so a locked-out user+address is refused before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Admin login throttling: lock out a username from one address after this many failures in a
# row, for AXES_COOLOFF_MINUTES (a password guesser from many addresses still has to guess
# per address; a user locked out from one address can still log in from another).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", default=15.0) / 60.0  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0) or None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Samples are stored and served in UTC; a local TIME_ZONE would only shift the admin's display.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# Hashed, compressed names once collectstatic has written its manifest (the images do at build
# time); before that, plain names, so a checkout without collectstatic never answers 500.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env.bool("STATIC_MANIFEST", default=(Path(STATIC_ROOT) / "staticfiles.json").exists())
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# The dashboard's chart library, installed from package-lock.json by `npm ci` (scripts/bootstrap.sh,
# the Dockerfile's assets stage) and served from here as /static/vendor/uplot/: no CDN.
STATICFILES_DIRS = [("vendor/uplot", BASE_DIR / "node_modules" / "uplot" / "dist")]
# Serve straight from the app directories when collectstatic has not run (tests, dev).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

# --- kubemonitor -------------------------------------------------------------------------------

# auto: use TimescaleDB when the server offers it (and its TSL features when licensed);
# off: plain PostgreSQL tables even where the extension is available.
TIMESCALEDB = env.str("TIMESCALEDB", default="auto")
if TIMESCALEDB not in ("auto", "off"):
    raise ImproperlyConfigured("TIMESCALEDB must be 'auto' or 'off'")

RETENTION_RAW_DAYS = env.int("RETENTION_RAW_DAYS", default=7)
RETENTION_1M_DAYS = env.int("RETENTION_1M_DAYS", default=30)
RETENTION_1H_DAYS = env.int("RETENTION_1H_DAYS", default=365)
# The name /api/cluster/ answers with; one cluster per installation.
CLUSTER_NAME = env.str("CLUSTER_NAME", default="default")
ROLLUP_REFRESH_SECONDS = env.int("ROLLUP_REFRESH_SECONDS", default=60)

# Alerting (docs/alerts.md): the evaluator's period, how long each cycle may spend sending, and
# the base URL that notifications link back to (generatorURL, externalURL).
ALERTS_EVALUATION_SECONDS = env.int("ALERTS_EVALUATION_SECONDS", default=30)
ALERTS_SEND_BUDGET_SECONDS = env.int("ALERTS_SEND_BUDGET_SECONDS", default=20)
ALERTS_EXTERNAL_URL = env.str("ALERTS_EXTERNAL_URL", default="")

# Reads need a session or a read token unless this is set.
ALLOW_ANONYMOUS_READS = env.bool("ALLOW_ANONYMOUS_READS", default=False)
# Largest accepted ingest body, compressed or not (a 110-pod batch is about 150 KB of JSON).
INGEST_MAX_BODY_BYTES = env.int("INGEST_MAX_BODY_BYTES", default=8 * 1024 * 1024)
# Retry-After of the 503 a request gets while the database is unreachable (metrics/outage.py).
DATABASE_OUTAGE_RETRY_AFTER_SECONDS = env.int("DATABASE_OUTAGE_RETRY_AFTER_SECONDS", default=5)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": [
        "metrics.api.renderers.FiniteJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "kubemonitor API",
    "DESCRIPTION": "Kubernetes resource usage with history and rollups, without metrics-server.",
    "VERSION": "1.0.0",
    # 3.1 because the ingest body's schema comes from pydantic, which writes JSON Schema 2020-12
    # (`"type": "null"` for nullable fields): valid in OpenAPI 3.1, invalid in 3.0.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "metrics.api.schema.document_error_answers",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django logs every 4xx answer as a WARNING ("Bad Request: /api/ingest/"). Those are
        # expected here (a refused batch, a wrong name, a missing token) and already named in
        # the answer; 5xx stay ERRORs.
        "django.request": {"level": "ERROR"},
    },
}

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_HTTPONLY = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool(
        "BEHIND_TLS_PROXY", default=False
    ) else None
    # SECURE_TLS=true: clients reach this server over HTTPS (directly or through a TLS proxy),
    # so cookies are secure, plain HTTP is redirected and browsers are told to stay on HTTPS;
    # `manage.py check --deploy` then passes with no warning.
    SECURE_TLS = env.bool("SECURE_TLS", default=False)
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=SECURE_TLS)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=SECURE_TLS)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SECURE_TLS)
    # Probes come over plain HTTP from the kubelet, inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if SECURE_TLS else 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=SECURE_TLS)
    # On with TLS so that check --deploy is clean (W021); turn off before the domain is ready.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=SECURE_TLS)
