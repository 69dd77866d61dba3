"""/proc/meminfo: the node's total and available memory (kB in the file, bytes out)."""

from __future__ import annotations

from collector.paths import Roots, read_text

WANTED = {"MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached", "SwapTotal", "SwapFree"}


def parse_meminfo(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in WANTED:
            parts = rest.split()
            value = int(parts[0])
            values[key] = value * 1024 if len(parts) > 1 and parts[1] == "kB" else value
    return values


def read_meminfo(roots: Roots) -> dict[str, int]:
    text = read_text(roots.proc_path("meminfo"))
    if text is None:
        raise FileNotFoundError(roots.proc_path("meminfo"))
    return parse_meminfo(text)
