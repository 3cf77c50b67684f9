"""The CPU image built and run for real (marker `container`: `make test-container`, run by
.ci/run, not by the default `pytest`).

deploy/docker/build-local.sh builds deploy/docker/Dockerfile.cpu with buildah on a Debian
bookworm base made by debootstrap (no image registry needed). Small bundles trained here on
the host (the image has no torch) are bind-mounted read-only at /models; the image's
ENTRYPOINT (`anomaly serve`) runs in it under `buildah run --isolation chroot` (host
network, 127.0.0.1 only) and is scored against. Where podman can run containers, the compose
file's service and Prometheus run as two containers on a podman network with DNS, with the
compose settings and the unmodified deploy/prometheus directory, and Prometheus must scrape
the service it found through DNS.

Skipped with one line where buildah (or, for the last test, podman) cannot run. Every
container, network and process is removed at the end, also on failure."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.deploy.conftest import DEPLOY, load_yaml
from tests.deploy.test_e2e_alerting import as_rows, free_port, normal_rows, wait_for

# The first run builds the base with debootstrap (1-3 min) before the image.
pytestmark = [pytest.mark.container, pytest.mark.timeout(1200)]

TAG = "localhost/vae-anomaly:cpu"
BASE_TAG = "localhost/vae-anomaly-base:bookworm"
PROM_TAG = "localhost/vae-anomaly-prometheus:test"
BUILD_SCRIPT = DEPLOY / "docker" / "build-local.sh"
COMPOSE = DEPLOY / "docker" / "docker-compose.yml"
NAME = f"vae-anomaly-test-{os.getpid()}"  # containers and network of this session
# float32 rounding between batch compositions (as in tests/service/test_http.py)
RTOL, ATOL = 1e-5, 1e-4


def sh(*cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}:\n"
                             f"{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return res


def first_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = (res.stderr or res.stdout).strip().splitlines()
    return lines[0] if lines else f"exit status {res.returncode}"


def report(request: pytest.FixtureRequest, line: str) -> None:
    """A line in the test run's output, also when output is captured."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    terminal = request.config.pluginmanager.getplugin("terminalreporter")
    if capture is None or terminal is None:
        return
    with capture.global_and_fixture_disabled():
        terminal.write_line(line)


def image_exists(name: str) -> bool:
    return sh("buildah", "inspect", "--type", "image", name, check=False).returncode == 0


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CPU image, built now from this checkout (the base is reused once made)."""
    if os.geteuid() != 0:
        pytest.skip("container tests need root (buildah's chroot isolation, debootstrap)")
    if shutil.which("buildah") is None:
        pytest.skip("buildah not found: apt-get install buildah (.ci/run installs it)")
    probe = sh("buildah", "from", "scratch", check=False)
    if probe.returncode != 0:
        pytest.skip(f"buildah cannot run here: {first_line(probe)}")
    sh("buildah", "rm", probe.stdout.strip(), check=False)
    if not image_exists(BASE_TAG) and shutil.which("debootstrap") is None:
        pytest.skip(f"debootstrap not found and no {BASE_TAG}: apt-get install debootstrap")
    log = tmp_path_factory.mktemp("build") / "build.log"
    start = time.monotonic()
    with log.open("w") as out:
        res = subprocess.run([str(BUILD_SCRIPT), "-t", TAG], stdout=out,
                             stderr=subprocess.STDOUT, timeout=1200, check=False)
    seconds = time.monotonic() - start
    assert res.returncode == 0, f"build-local.sh failed:\n{log.read_text()[-5000:]}"
    size = sh("buildah", "images", "--noheading", "--format", "{{.Size}}", TAG).stdout.strip()
    report(request, f"\n[container] {TAG}: {size}, build-local.sh took {seconds:.0f} s")
    return TAG


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository: `tab/` (4 numeric columns) and `digits/` (8x8 grey images),
    trained briefly on the host; world-readable for the image's uid 10001."""
    pytest.importorskip("torch", reason="training the bundles needs the 'train' extra")
    from sklearn.datasets import load_digits

    from anomaly.bundle import ImageInput
    from training.config import TrainConfig
    from training.pipeline import image_config, train_images, train_tabular

    repo = tmp_path_factory.mktemp("container-models") / "models"
    train_tabular(normal_rows(3000, seed=0), repo / "tab", "tab",
                  TrainConfig(epochs=5, hidden=(32, 16), latent_dim=2, batch_size=256,
                              mc_samples=8, progress=False, target_fpr=0.05))
    digits = load_digits()
    images = (digits.images[digits.target != 7] / 16.0).astype(np.float32)[:, None]
    schema = ImageInput(height=8, width=8, channels=1, scale=255.0)
    train_images(images, schema, repo / "digits", "digits",
                 image_config(schema, epochs=2, progress=False, target_fpr=0.05,
                              conv_channels=(8, 16), dense=64, latent_dim=8))
    for root, _dirs, files in os.walk(repo):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return repo


def digit_png(index: int) -> bytes:
    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = np.round(load_digits().images[index] * 255 / 16).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Served:
    url: str
    port: int
    container: str  # buildah working container
    config: dict[str, Any]  # the image's Docker config (Entrypoint, Healthcheck, ...)
    log: Path

    def run(self, *cmd: str, env: dict[str, str] | None = None,
            volumes: tuple[str, ...] = (), timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
        """A command in the container (the image's user and environment)."""
        opts = [a for k, v in (env or {}).items() for a in ("--env", f"{k}={v}")]
        opts += [a for v in volumes for a in ("--volume", v)]
        return sh("buildah", "run", "--isolation", "chroot", *opts, self.container, "--",
                  *cmd, timeout=timeout, check=False)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group (buildah, its chroot helper, the server), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # helpers left after buildah exited
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def served(image: str, models: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    """The image's ENTRYPOINT on 127.0.0.1:<free port>, /models bind-mounted read-only."""
    config = json.loads(sh("buildah", "inspect", "--type", "image", image).stdout)
    docker_config = config["Docker"]["config"]
    container = sh("buildah", "from", "--name", NAME, image).stdout.strip()
    log = tmp_path_factory.mktemp("served") / "service.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        # The image declares VOLUME /models; buildah run would mount an empty anonymous
        # volume over the bind mount, so the working container (not the image) drops it.
        sh("buildah", "config", "--volume", "/models-", container)
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["buildah", "run", "--isolation", "chroot", "--network", "host",
                 "--volume", f"{models}:/models:ro",
                 "--env", "ANOMALY_HOST=127.0.0.1", "--env", f"ANOMALY_PORT={port}",
                 container, "--", *docker_config["Entrypoint"]],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"the service exited {process.returncode}:\n"
                                     + log.read_text(errors="replace")[-4000:])
            return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200

        wait_for("the service in the image to be ready", ready, 90)
        yield Served(url, port, container, docker_config, log)
    except BaseException:
        sys.stderr.write(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}\n")
        raise
    finally:
        if process is not None:
            stop_group(process)
        sh("buildah", "rm", container, check=False)


# ---------------------------------------------------------------------------- buildah run
def test_scores_a_row_as_on_the_host(served: Served, models: Path) -> None:
    from anomaly.inference import Scorer

    rows = as_rows(normal_rows(1, seed=5))
    r = httpx.post(f"{served.url}/v1/models/tab/score", json={"rows": rows}, timeout=30)
    assert r.status_code == 200, r.text
    (item,) = r.json()["results"]
    offline = Scorer(models / "tab").score_rows(rows)
    assert item["score"] == pytest.approx(float(offline.scores[0]), RTOL, ATOL)
    assert 0.0 <= item["p_value"] <= 1.0


def test_scores_and_explains_an_image_as_on_the_host(served: Served, models: Path) -> None:
    from PIL import Image

    from anomaly.inference import Scorer

    png = digit_png(3)
    r = httpx.post(f"{served.url}/v1/models/digits/score?explain=true", content=png,
                   headers={"Content-Type": "image/png"}, timeout=30)
    assert r.status_code == 200, r.text
    (item,) = r.json()["results"]
    offline = Scorer(models / "digits").score_images([png])
    assert item["score"] == pytest.approx(float(offline.scores[0]), RTOL, ATOL)
    heatmap = Image.open(io.BytesIO(base64.b64decode(item["heatmap_png"])))  # matplotlib
    assert heatmap.format == "PNG" and heatmap.size == (8, 8)


def test_metrics(served: Served) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    rows = as_rows(normal_rows(3, seed=6))
    assert httpx.post(f"{served.url}/v1/models/tab/score", json={"rows": rows},
                      timeout=30).status_code == 200
    r = httpx.get(f"{served.url}/metrics", timeout=10)
    assert r.status_code == 200
    samples = {(s.name, s.labels.get("model"), s.labels.get("provider")): s.value
               for f in text_string_to_metric_families(r.text) for s in f.samples}
    assert samples[("anomaly_samples_scored_total", "tab", None)] >= 3
    assert samples[("anomaly_model_ready", "tab", None)] == 1
    assert samples[("anomaly_model_ready", "digits", None)] == 1
    assert samples[("anomaly_model_info", "digits", "CPUExecutionProvider")] == 1


def test_inside_the_image(served: Served, models: Path) -> None:
    """Non-root, no torch, no pip, no compiler; the model repository is read-only."""
    assert served.config["User"] == "10001:10001"
    probe = served.run("python", "-c", "import importlib.util as u, os, shutil; print(os.getuid(),"
                       " os.getgid(), [m for m in ('torch', 'pip', 'onnx') if u.find_spec(m)],"
                       " [c for c in ('gcc', 'cc', 'g++', 'strip') if shutil.which(c)])")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split("\n")[0] == "10001 10001 [] []"
    write = served.run("touch", "/models/x", volumes=(f"{models}:/models:ro",), timeout=30)
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr


def test_healthcheck_command(served: Served) -> None:
    """The image's HEALTHCHECK, run in the container: 0 with the service up, else not 0."""
    test = served.config["Healthcheck"]["Test"]
    assert test[0] == "CMD", test
    up = served.run(*test[1:], env={"ANOMALY_PORT": str(served.port)}, timeout=30)
    assert up.returncode == 0, up.stdout + up.stderr
    down = served.run(*test[1:], env={"ANOMALY_PORT": str(free_port())}, timeout=30)
    assert down.returncode != 0


# ---------------------------------------------------------------------------- podman run
def podman_run() -> list[str]:
    """`podman run` with runc (crun, where installed, refuses this machine's hybrid cgroups)
    and rlimits it can set: podman's defaults (nofile 1048576, nproc 4194304) are over the
    hard limits here, and runc fails on them with 'error setting rlimits ... operation not
    permitted'."""
    import resource

    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 16384)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    return ["podman", *runtime, "run", "--ulimit", f"nofile={nofile}:{nofile}",
            "--ulimit", f"nproc={nproc}:{nproc}"]


def compose_run_args(service: dict[str, Any]) -> list[str]:
    """`podman run` flags for the compose service's settings that podman run can express."""
    args = ["--read-only"] if service.get("read_only") else []
    args += [a for t in service.get("tmpfs", []) for a in ("--tmpfs", t)]
    args += [a for c in service.get("cap_drop", []) for a in ("--cap-drop", c)]
    args += [a for o in service.get("security_opt", []) for a in ("--security-opt", o)]
    args += [a for k, v in (service.get("environment") or {}).items()
             for a in ("--env", f"{k}={v}")]
    limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
    if "cpus" in limits:
        args += ["--cpus", str(limits["cpus"])]
    if "memory" in limits:
        args += ["--memory", str(limits["memory"])]
    return args


def test_compose_pair_with_podman(image: str, models: Path) -> None:
    """docker-compose.yml's `anomaly` and `prometheus` under podman run: Prometheus, with the
    unmodified deploy/prometheus mounted, finds the service through DNS and scrapes it."""
    if shutil.which("podman") is None:
        pytest.skip("podman not found: apt-get install podman (.ci/run installs it)")
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not found: install the Debian package 'prometheus'")
    probe = sh(*podman_run(), "--rm", "--no-healthcheck", "--entrypoint", "true", image,
               check=False)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run containers here: {first_line(probe)}")
    compose = load_yaml(COMPOSE)["services"]
    prom_service = compose["prometheus"]
    created: list[tuple[str, ...]] = []  # removal commands, run in reverse order
    try:
        # Debian's prometheus binary in a second local image (stands in for prom/prometheus).
        sh("buildah", "rmi", PROM_TAG, check=False)  # left by an interrupted run
        ctr = sh("buildah", "from", BASE_TAG).stdout.strip()
        created.append(("buildah", "rm", ctr))
        sh("buildah", "copy", ctr, prometheus, "/usr/bin/prometheus")
        sh("buildah", "config", "--cmd", "[]", "--entrypoint", '["/usr/bin/prometheus"]',
           "--user", "65534:65534", ctr)
        sh("buildah", "commit", "--rm", ctr, PROM_TAG)
        created[-1] = ("buildah", "rmi", PROM_TAG)
        sh("podman", "network", "create", NAME)
        created.append(("podman", "network", "rm", "-f", NAME))
        dns = json.loads(sh("podman", "network", "inspect", NAME).stdout)[0]["dns_enabled"]
        if not dns:
            pytest.skip("podman networks have no DNS here: apt-get install "
                        "golang-github-containernetworking-plugin-dnsname dnsmasq-base")
        service_port, prom_port = free_port(), free_port()
        sh(*podman_run(), "-d", "--name", f"{NAME}-anomaly", "--network", NAME,
           "--network-alias", "anomaly", *compose_run_args(compose["anomaly"]),
           "--volume", f"{models}:/models:ro", "--publish", f"127.0.0.1:{service_port}:8000",
           image)
        created.append(("podman", "rm", "-f", "-t", "5", f"{NAME}-anomaly"))
        mounts = dict(v.split(":")[:2] for v in prom_service["volumes"])
        config_dir = (COMPOSE.parent / next(k for k, v in mounts.items()
                                            if v == "/etc/prometheus")).resolve()
        sh(*podman_run(), "-d", "--name", f"{NAME}-prometheus", "--network", NAME,
           "--volume", f"{config_dir}:/etc/prometheus:ro", "--tmpfs", "/prometheus:mode=1777",
           "--publish", f"127.0.0.1:{prom_port}:9090", PROM_TAG, *prom_service["command"])
        created.append(("podman", "rm", "-f", "-t", "5", f"{NAME}-prometheus"))

        service = f"http://127.0.0.1:{service_port}"
        wait_for("the service container to be ready", lambda: httpx.get(
            f"{service}/v2/health/ready", timeout=2).status_code == 200, 90)
        health = sh("podman", "healthcheck", "run", f"{NAME}-anomaly", check=False)
        assert health.returncode == 0, health.stdout + health.stderr

        api = f"http://127.0.0.1:{prom_port}/api/v1"

        def scraped() -> list[dict[str, Any]] | None:
            targets = httpx.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
            ours = [t for t in targets if t["labels"]["job"] == "vae-anomaly"]
            return ours if ours and all(t["health"] == "up" for t in ours) else None

        # prometheus.yml scrapes every 15 s and refreshes DNS every 30 s.
        (target,) = wait_for("Prometheus to scrape the service found through DNS", scraped,
                             90, interval_s=1)
        assert target["scrapeUrl"].endswith(":8000/metrics"), target
        ready = httpx.get(f"{api}/query", params={"query": "anomaly_model_ready"},
                          timeout=5).json()["data"]["result"]
        assert {r["metric"]["model"]: r["value"][1] for r in ready} == \
            {"tab": "1", "digits": "1"}
    except pytest.skip.Exception:
        raise
    except BaseException:
        for name in (f"{NAME}-anomaly", f"{NAME}-prometheus"):
            logs = sh("podman", "logs", name, check=False)
            sys.stderr.write(f"--- {name} ---\n{(logs.stdout + logs.stderr)[-3000:]}\n")
        raise
    finally:
        for cmd in reversed(created):
            sh(*cmd, check=False)

