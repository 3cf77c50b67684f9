""".ci/tools.sh, the one set-up path for the system tools the tests run: `make test` and
.ci/run both call it. Driven here on a PATH of fakes (an `id` that says who we are, an
`apt-get` that records what it was asked and "installs" by creating the probed commands), so
the real machine's packages are never touched."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO
from tests.skip_summary import summary_line

TOOLS = REPO / ".ci" / "tools.sh"
BASH = shutil.which("bash") or "/bin/bash"
CHMOD = shutil.which("chmod") or "/bin/chmod"
DEFAULT_PROBES = ["promtool", "prometheus", "amtool", "docker-compose", "shellcheck", "chromium"]
DEFAULT_PACKAGES = "prometheus prometheus-alertmanager docker-compose shellcheck chromium"
#: what each fake package "installs"
PROVIDES = {"prometheus": ["promtool", "prometheus"], "prometheus-alertmanager": ["amtool"],
            "docker-compose": ["docker-compose"], "shellcheck": ["shellcheck"],
            "chromium": ["chromium"]}


def fake(bin_dir: Path, name: str, body: str = "exit 0") -> None:
    path = bin_dir / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


def machine(tmp_path: Path, uid: int = 0, apt: bool = True, have: tuple[str, ...] = (),
            sudo: bool = False) -> Path:
    """A bin folder standing in for a machine: who we are, which tools exist, and an apt-get
    that logs its calls and provides the packages' commands."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    fake(bin_dir, "id", f'[ "$1" = -u ] && echo {uid}')
    for name in have:
        fake(bin_dir, name)
    if sudo:
        fake(bin_dir, "sudo", '[ "$1" = -n ] && shift; "$@"')
    if apt:
        provides = " ".join(f"{pkg}) cmds='{' '.join(c)}' ;;" for pkg, c in PROVIDES.items())
        fake(bin_dir, "apt-get", f"""echo "$*" >> {tmp_path}/apt.log
[ "$1" = install ] || exit 0
for pkg in "$@"; do
    cmds=''
    case "$pkg" in {provides} esac
    for c in $cmds; do printf '#!{BASH}\\nexit 0\\n' > {bin_dir}/$c; {CHMOD} +x {bin_dir}/$c; done
done""")
    return bin_dir


def tools(bin_dir: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASH, str(TOOLS), *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": str(bin_dir), **(env or {})}, check=False)


def apt_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "apt.log"
    return log.read_text().splitlines() if log.exists() else []


def test_nothing_missing_means_no_apt_get_and_no_output(tmp_path: Path) -> None:
    res = tools(machine(tmp_path, have=tuple(DEFAULT_PROBES)))
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    assert apt_calls(tmp_path) == []


def test_root_installs_the_missing_packages_once(tmp_path: Path) -> None:
    res = tools(machine(tmp_path, have=("shellcheck", "docker-compose")), "--require")
    assert res.returncode == 0, res.stdout + res.stderr
    assert apt_calls(tmp_path) == [
        "update -qq",
        "install -y -qq --no-install-recommends prometheus prometheus-alertmanager chromium"]
    assert res.stdout == ("tools: installing prometheus prometheus-alertmanager chromium (for "
                          "promtool prometheus amtool chromium) with apt-get\n")


def test_passwordless_sudo_is_used(tmp_path: Path) -> None:
    res = tools(machine(tmp_path, uid=1000, sudo=True), "--require")
    assert res.returncode == 0, res.stdout + res.stderr
    assert apt_calls(tmp_path)[-1].endswith(DEFAULT_PACKAGES)


@pytest.mark.parametrize(("uid", "apt", "env", "why"), [
    (0, False, {}, "apt-get not found"),
    (1000, True, {}, "not root and sudo needs a password"),
    (0, True, {"TOOLS_INSTALL": "no"}, "TOOLS_INSTALL=no"),
], ids=["no-apt", "no-permission", "opted-out"])
def test_without_apt_one_line_says_what_skips_and_how_to_install(
        tmp_path: Path, uid: int, apt: bool, env: dict[str, str], why: str) -> None:
    res = tools(machine(tmp_path, uid=uid, apt=apt), env=env)
    assert res.returncode == 0 and res.stderr == ""
    assert len(res.stdout.splitlines()) == 1, res.stdout
    line = res.stdout.strip()
    assert line.startswith(f"tools: {' '.join(DEFAULT_PROBES)} not found ({why}): these tests "
                           "will skip: alert-rule unit tests")
    assert "the HTML report rendering (tests/anomaly/evaluation/test_report_render.py)" in line
    assert line.endswith("install their tools with: sudo apt-get install -y "
                         f"--no-install-recommends {DEFAULT_PACKAGES}")
    assert apt_calls(tmp_path) == []
    assert tools(machine(tmp_path / "ci", uid=uid, apt=apt), "--require",
                 env=env).returncode == 1  # CI fails instead


def test_a_failing_apt_get_is_reported_not_fatal(tmp_path: Path) -> None:
    bin_dir = machine(tmp_path, apt=False)
    fake(bin_dir, "apt-get", "exit 100")
    res = tools(bin_dir)
    assert res.returncode == 0 and "(apt-get install failed)" in res.stdout
    assert tools(bin_dir, "--require").returncode == 1


def test_container_tools_only_when_asked(tmp_path: Path) -> None:
    bin_dir = machine(tmp_path, apt=False, have=tuple(DEFAULT_PROBES))
    assert tools(bin_dir).stdout == ""
    line = tools(bin_dir, "--container").stdout
    assert "buildah podman" in line and "(make test-container)" in line
    assert tools(bin_dir, "--bogus").returncode == 2


def test_make_test_and_ci_share_the_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test: tools lint$", makefile, re.M)
    assert re.search(r"^tools:\n\t@\.ci/tools\.sh$", makefile, re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert ".ci/tools.sh --container --require" in ci and "apt-get" not in ci
    steps = [line for line in ci.splitlines() if line and not line.startswith("#")]
    assert steps[-4:] == [".ci/tools.sh --container --require", "make test", "make test-slow",
                          "make test-container"]


def test_every_debian_tool_a_test_skips_on_is_installed_by_the_script() -> None:
    """A skip message naming a Debian package must name one the script installs."""
    script = TOOLS.read_text()
    named: set[str] = set()
    for path in (REPO / "tests").rglob("*.py"):
        text = path.read_text()
        named |= set(re.findall(r"install the Debian package '([\w.-]+)'", text))
        named |= set(re.findall(r'\btool\("[\w-]+", "([\w.-]+)"\)', text))
    named -= {"pip"}
    assert {"prometheus", "prometheus-alertmanager", "shellcheck", "chromium"} <= named
    for package in named:
        assert f"|{package}|" in script or f" {package}|" in script, package


def test_the_summary_line_tells_tool_skips_from_absent_data() -> None:
    line = summary_line([
        "promtool not found: install the Debian package 'prometheus'",
        "promtool not found: apt-get install prometheus (CI's .ci/run does)",
        "MNIST not present at /x/../shared/data/mnist",
        "this kernel or filesystem has no atomic exchange"])
    assert line == ("2 tool-related skips (promtool not found: run .ci/tools.sh as root, or "
                    "the apt-get command it prints); 1 skipped for absent data: MNIST not "
                    "present at /x/../shared/data/mnist (1); 1 other: this kernel or "
                    "filesystem has no atomic exchange (1)")
    assert summary_line([]) == "0 tool-related skips; 0 skipped for absent data"
