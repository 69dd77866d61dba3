"""kubemonitor collector: a per-node agent that reads /proc and cgroups and posts usage batches."""

__version__ = "0.1.0"
