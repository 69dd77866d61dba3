"""The README's commands and CI's entry point stay wired together."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert lines[-1] == "exec bash scripts/test.sh"


def test_bootstrap_skips_installing_when_the_requirements_are_unchanged() -> None:
    venv = ROOT / ".venv"
    assert (venv / ".requirements.sha256").exists(), "run scripts/bootstrap.sh first"
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "bootstrap.sh")],
        env={**os.environ, "KUBEMONITOR_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "venv up to date" in result.stderr
