"""The README's commands and CI's entry point stay wired together."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert lines[-1] == "exec bash scripts/test.sh"


def _bootstrap(project: Path) -> str:
    result = subprocess.run(
        ["bash", str(project / "scripts" / "bootstrap.sh")],
        env={"PATH": os.environ["PATH"], "PYTHON": sys.executable, "HOME": str(project)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_bootstrap_installs_once_and_again_only_when_a_requirements_file_changes(tmp_path: Path) -> None:
    # A project with the real script and requirements that need no download.
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "bootstrap.sh", tmp_path / "scripts" / "bootstrap.sh")
    (tmp_path / "requirements.txt").write_text("# nothing\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\n")

    first = _bootstrap(tmp_path)
    assert "creating venv" in first and "venv ready" in first
    assert (tmp_path / ".venv" / "bin" / "python").exists()

    assert "venv up to date" in _bootstrap(tmp_path)

    (tmp_path / "requirements.txt").write_text("# nothing, still\n")
    again = _bootstrap(tmp_path)
    assert "installing" in again and "creating venv" not in again
    assert "venv up to date" in _bootstrap(tmp_path)


def test_bootstrap_runs_npm_ci_once_and_again_only_when_the_lock_file_changes(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "bootstrap.sh", tmp_path / "scripts" / "bootstrap.sh")
    (tmp_path / "requirements.txt").write_text("# nothing\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\n")
    # No dependencies, so npm ci needs no registry; the lock file is what npm itself writes.
    (tmp_path / "package.json").write_text('{"name": "t", "private": true}\n')
    lock = {"name": "t", "lockfileVersion": 3, "requires": True, "packages": {"": {"name": "t"}}}
    (tmp_path / "package-lock.json").write_text(json.dumps(lock))

    assert "installing the dashboard's browser libraries (npm ci)" in _bootstrap(tmp_path)
    assert (tmp_path / "node_modules" / ".package-lock.sha256").exists()
    assert "node_modules up to date" in _bootstrap(tmp_path)

    lock["packages"][""]["version"] = "1.0.0"
    (tmp_path / "package-lock.json").write_text(json.dumps(lock))
    assert "npm ci" in _bootstrap(tmp_path)
