from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "metrics"
    verbose_name = "Kubernetes metrics"

    def ready(self) -> None:
        # Registers the storage-tier system checks (metrics.W001 / W002).
        from metrics import backend  # noqa: F401
