"""Deployment files stay in step with the code: compose parses, commands exist, env vars are real settings,
Kubernetes manifests validate against the API schemas."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cli.main import build_parser
from service.settings import Settings, unknown_env_vars

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["docker-compose.yml", "deploy/compose.gpu.yml"]
K8S_DIR = ROOT / "deploy" / "k8s"


def _compose_config() -> dict:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed (Debian: apt-get install docker-compose; `make test` does it)")
    args = [exe, "--project-directory", str(ROOT)]
    for f in COMPOSE_FILES:
        args += ["-f", str(ROOT / f)]
    out = subprocess.run(
        [*args, "config"], capture_output=True, text=True, env={"VIGIL_ADMIN_KEY": "k", "PATH": "/usr/bin:/bin"}
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def _k8s_documents() -> list[dict]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _vigil_services(config: dict) -> dict[str, dict]:
    return {name: svc for name, svc in config["services"].items() if "vigil" in str(svc.get("command", ""))}


def test_compose_parses_and_wires_health():
    config = _compose_config()
    services = _vigil_services(config)
    assert set(services) == {"api", "worker", "ingest"}
    for name, svc in config["services"].items():
        assert "healthcheck" in svc, f"{name} has no healthcheck"
    for name, svc in services.items():
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert "--appendonly" in config["services"]["redis"]["command"]  # persistence


def _commands() -> list[list[str]]:
    commands = []
    for svc in _vigil_services(_compose_config()).values():
        commands.append(svc["command"])
        commands.append(svc["healthcheck"]["test"][1:])
    for doc in _k8s_documents():
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if container.get("args", [""])[0] == "vigil":
                commands.append(container["args"])
            probe = container.get("livenessProbe", {}).get("exec", {}).get("command")
            if probe and probe[0] == "vigil":
                commands.append(probe)
    return commands


def test_every_command_exists_in_the_cli():
    parser = build_parser()
    commands = _commands()
    assert len(commands) >= 8
    for command in commands:
        assert command[0] == "vigil"
        try:
            parser.parse_args(command[1:])
        except SystemExit:
            pytest.fail(f"`{' '.join(command)}` is not a valid vigil command")


def _env_vars() -> dict[str, str]:
    env: dict[str, str] = {}
    for svc in _vigil_services(_compose_config()).values():
        env.update({k: str(v) for k, v in svc["environment"].items()})
    for doc in _k8s_documents():
        env.update({k: str(v) for k, v in (doc.get("data") or doc.get("stringData") or {}).items()})
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            env.update({e["name"]: str(e["value"]) for e in container.get("env", [])})
    return {k: v for k, v in env.items() if k.startswith("VIGIL_")}


def test_every_env_var_is_a_setting(monkeypatch):
    env = _env_vars()
    assert "VIGIL_REDIS__URL" in env
    assert unknown_env_vars(env) == []
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    Settings()  # every value parses


def test_unknown_env_var_is_refused():
    assert unknown_env_vars({"VIGIL_REDIS__URL": "x", "VIGIL_REDIS_URL": "x", "VIGIL_WORKER__NOPE": "1"}) == [
        "VIGIL_REDIS_URL",
        "VIGIL_WORKER__NOPE",
    ]


def test_kubernetes_manifests_validate():
    exe = shutil.which("kubernetes-validate", path=str(Path(__import__("sys").executable).parent))
    assert exe, "kubernetes-validate is a dev dependency (pip install -e '.[dev]')"
    files = [str(p) for p in sorted(K8S_DIR.glob("*.yaml")) if p.name != "kustomization.yaml"]
    out = subprocess.run([exe, "--strict", "--quiet", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    kinds = {d["kind"] for d in _k8s_documents()}
    assert {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler"} <= kinds
    worker = next(d for d in _k8s_documents() if d["metadata"]["name"] == "vigil-worker" and d["kind"] == "Deployment")
    limits = worker["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1


def test_dockerfile_installs_the_torch_builds_pyproject_pins():
    """The image installs torch/torchvision from its own index first; they must be the versions pyproject pins,
    or `pip install .` would fetch other (multi-GB CUDA) builds."""
    import re
    import tomllib

    pins = {
        name: version
        for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if (m := re.fullmatch(r"(torch|torchvision)==([\w.]+)", dep))
        for name, version in [m.groups()]
    }
    assert set(pins) == {"torch", "torchvision"}
    docker = (ROOT / "Dockerfile").read_text()
    for name, version in pins.items():
        assert f'"{name}=={version}"' in docker, f"Dockerfile does not install {name}=={version}"
