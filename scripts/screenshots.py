#!/usr/bin/env python3
"""Make the README's dashboard screenshots from demo data, in headless Chromium.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kubemonitor_shots .venv/bin/python scripts/screenshots.py

Migrates the database DATABASE_URL names (use a throwaway one: demo data is loaded into it),
loads 6 hours of demo data (`manage.py loaddemo`), serves it with gunicorn on a free local port
and writes docs/dashboard-overview.png, docs/dashboard-deployment.png, docs/dashboard-pods.png and
docs/dashboard-model-server.png (--out picks another folder). Needs Debian's chromium and
playwright (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor_site.settings")

from metrics.tests import browser  # noqa: E402
from metrics.tests.gunicorn_server import Gunicorn  # noqa: E402

# name: (path, whole page rather than the first 1000 px)
SHOTS = {
    "dashboard-overview.png": ("/", True),  # down to the top consumers
    "dashboard-deployment.png": ("/namespaces/shop/deployments/frontend/", False),
    "dashboard-pods.png": ("/pods/?sort=-cpu", False),
    "dashboard-model-server.png": ("/views/model-servers/ml/vllm/?window=3600", False),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="Folder for the PNGs (docs/).")
    parser.add_argument("--hours", default="6", help="Hours of demo data (6).")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        print("screenshots: set DATABASE_URL to a throwaway database (demo data is loaded into it)", file=sys.stderr)
        return 2
    reason = browser.missing_reason()
    if reason:
        print(f"screenshots: {reason}", file=sys.stderr)
        return 2
    env = {**os.environ, "SECRET_KEY": os.environ.get("SECRET_KEY", "screenshots-only")}
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], check=True, env=env, cwd=REPO)
    subprocess.run([*manage, "loaddemo", "--hours", args.hours], check=True, env=env, cwd=REPO)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server_env = {"ALLOW_ANONYMOUS_READS": "true", "SECRET_KEY": env["SECRET_KEY"]}
        with Gunicorn(Path(tmp) / "gunicorn.log", env["DATABASE_URL"], args=["--threads", "4"], env=server_env) as server:
            with browser.chromium() as chromium:
                page = browser.WatchedPage(chromium, width=1400, height=1000)
                for name, (path, full_page) in SHOTS.items():
                    p = page.open(server.url + path)
                    # Clear of the cursor, so no tooltip is caught in the picture.
                    p.mouse.move(0, 0)
                    p.screenshot(path=str(args.out / name), full_page=full_page)
                    print(f"screenshots: {args.out / name}")
                if page.errors:
                    print("screenshots: console errors:\n  " + "\n  ".join(page.errors), file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
