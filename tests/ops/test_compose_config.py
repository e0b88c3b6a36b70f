"""docker-compose.yml and its overrides: health checks, restart policies, named volumes, pinned images,
no inline secrets, every role scraped; `docker-compose config` accepts the files when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from afd_async import metrics as m

REPO = Path(__file__).resolve().parents[2]
ROLE_SERVICES = set(m.ROLES)
SERVICES = ROLE_SERVICES | {"secrets-init", "redis", "prometheus", "grafana"}
SECRET_WORDS = re.compile(r"(password|passwd|secret|token|api_?key|apikey)", re.I)


def _load(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load("docker-compose.yml")


def test_all_services_present(compose):
    assert set(compose["services"]) == SERVICES


def test_every_service_has_healthcheck_and_restart_policy(compose):
    for name, svc in compose["services"].items():
        assert svc.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        assert svc.get("restart") in {"no", "always", "unless-stopped", "on-failure"}, f"{name}: no restart policy"
        assert "container_name" not in svc, f"{name}: container_name prevents --scale"


def test_images_are_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc["image"]
        default = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", image)  # the default of ${VAR:-default}
        assert ":" in default and not default.endswith((":latest", ":")), f"{name}: unpinned image {image}"
    assert compose["services"]["redis"]["image"].endswith(":-redis:7.2.5}")


def test_volumes_are_named_and_declared(compose):
    declared = set(compose["volumes"])
    assert {"checkpoints", "outputs", "redis-data"} <= declared
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("./"):
                assert source.startswith(("./ops/",)), f"{name}: bind mount outside ops/: {vol}"
                assert vol.endswith(":ro"), f"{name}: config bind mounts are read-only: {vol}"
            else:
                assert source in declared, f"{name}: volume {source} not declared"


def test_no_secrets_inline(compose):
    def walk(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, str) and SECRET_WORDS.search(k) and isinstance(v, (str, int)):
                    assert str(k).endswith("_FILE") or str(v).startswith("/run/"), f"{path}.{k} looks like an inline secret"
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str):
            assert not re.search(r"(requirepass|--pass|-a)\s+[A-Za-z0-9]{6,}", node), f"{path}: inline secret"
    walk(compose)
    env = (REPO / "ops" / "env.example").read_text()
    for line in env.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            assert not (SECRET_WORDS.search(key) and value.strip() and not key.endswith("_FILE")), f"env.example: {key}"


def test_ports_are_published_on_loopback_only_and_never_in_the_base_file(compose):
    # v1 cannot drop inherited ports, and host networking forbids them: the base file publishes none.
    for name, svc in compose["services"].items():
        assert "ports" not in svc, f"{name}: publish ports in docker-compose.override.yml"
    override = _load("docker-compose.override.yml")
    for name, svc in override["services"].items():
        assert set(svc) == {"ports"}, name
        assert all(str(p).startswith("127.0.0.1:") for p in svc["ports"]), name
    assert "ports" not in str(_load("ops/compose.hostnet.yml"))


def test_redis_has_aof_and_password(compose):
    script = "\n".join(compose["services"]["redis"]["command"])
    assert "appendonly yes" in script and "requirepass" in script and "/run/afd-secrets/redis_password" in script


def test_roles_use_the_afd_commands_and_secret_files(compose):
    for role in ROLE_SERVICES:
        svc = compose["services"][role]
        # `sh -c 'exec afd "$0" cluster=$AFD_CLUSTER ... $AFD_OVERRIDES' <role>`: one set of overrides for all
        assert svc["command"] == [role], role
        sh, flag, script = svc["entrypoint"]
        assert (sh, flag) == ("sh", "-c") and script.startswith('exec afd "$$0" "cluster=$${AFD_CLUSTER}"'), role
        assert "text.cache_dir=/var/lib/afd/text-cache" in script and script.endswith("$${AFD_OVERRIDES}")
        env = svc["environment"]
        assert env["AFD_CLUSTER"] == "compose" and env["AFD_OVERRIDES"] == "${AFD_OVERRIDES:-}"
        assert env["AFD_REDIS_PASSWORD_FILE"].startswith("/run/") and env["AFD_TEACHER_API_KEY_FILE"].startswith("/run/")
        assert any(v.startswith("text-cache:/var/lib/afd/text-cache") for v in svc["volumes"]), role
        # a finished run (student learner at train.steps, stop key set) exits 0 and stays down
        assert svc["restart"] == "on-failure", role
    for name in ("d-learner", "student-learner"):
        assert "outputs:/var/lib/afd/outputs" in compose["services"][name]["volumes"]


def test_hostnet_override_covers_every_service_on_loopback():
    over = _load("ops/compose.hostnet.yml")
    assert set(over["services"]) == SERVICES
    for name, svc in over["services"].items():
        assert svc["network_mode"] == "host", name
        if name in ROLE_SERVICES:
            assert "command" not in svc and svc["environment"] == {"AFD_CLUSTER": "compose_hostnet"}, name
    pending = yaml.safe_load((REPO / "configs" / "cluster" / "compose_hostnet.yaml").read_text())
    assert pending["host"] == "127.0.0.1"
    for key, value in pending.items():
        if key.endswith("_host"):
            assert value == "127.0.0.1", key
    assert "127.0.0.1" in pending["redis_url"] and f":{over['services']['redis']['environment']['AFD_REDIS_PORT']}/" in pending["redis_url"]
    assert "--web.listen-address=127.0.0.1:19090" in over["services"]["prometheus"]["command"]
    assert over["services"]["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"


def test_cluster_configs_name_the_fields_roles_read():
    from afd_async.config import load_config

    for name in ("compose", "compose_hostnet"):
        path = f"configs/cluster/{name}.yaml"
        cfg = yaml.safe_load((REPO / path).read_text())
        assert load_config([f"cluster={name}"]).cluster.redis_url == cfg["redis_url"]
        for key in ("redis_url", "metrics_port", "feeder_host", "student_learner_host", "d_learner_host", "host"):
            assert key in cfg, f"{path}: {key}"
        assert "@" not in cfg["redis_url"], "the Redis password never goes in the URL"


def test_gpu_override_reserves_gpus_for_student_actor():
    over = _load("ops/compose.gpu.yml")
    devices = over["services"]["student-actor"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_prometheus_scrapes_every_role_on_its_port():
    bridge = {j["job_name"]: j for j in _load("ops/prometheus/prometheus.yml")["scrape_configs"]}
    hostnet = {j["job_name"]: j for j in _load("ops/prometheus/prometheus.hostnet.yml")["scrape_configs"]}
    for role, port in m.DEFAULT_METRICS_PORTS.items():
        (sd,) = bridge[role]["dns_sd_configs"]
        assert sd["names"] == [role] and sd["port"] == port and sd["type"] == "A"
        targets = hostnet[role]["static_configs"][0]["targets"]
        assert targets[0] == f"127.0.0.1:{port}"
        lo, hi = m.port_block(role)
        assert all(t.startswith("127.0.0.1:") and lo <= int(t.rsplit(":", 1)[1]) <= hi for t in targets)
        if role in ("teacher-actor", "student-actor"):
            assert len(targets) == hi - lo + 1, f"{role}: scalable roles list their whole port block"


@pytest.mark.parametrize("files", [
    ["docker-compose.yml"],
    ["docker-compose.yml", "docker-compose.override.yml"],
    ["docker-compose.yml", "ops/compose.hostnet.yml"],
    ["docker-compose.yml", "ops/compose.gpu.yml"],
    ["docker-compose.yml", "ops/compose.secrets.yml"],
])
def test_docker_compose_accepts_the_files(files):
    assert shutil.which("docker-compose"), "docker-compose is missing: `make setup` installs it (Debian package)"
    args = ["docker-compose", "--project-directory", str(REPO)]
    for f in files:
        args += ["-f", str(REPO / f)]
    proc = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
