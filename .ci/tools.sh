#!/usr/bin/env bash
# The system tools the tests run (Debian packages), installed in one place: `make test` calls
# this before pytest, and .ci/run calls it with --container --require before `make test` and
# `make test-container`. Python packages are not here: they are the extras `make` installs.
#
#   .ci/tools.sh              install what `make test` needs that is missing, with apt-get when
#                             it exists and may be used (root, or sudo without a password);
#                             otherwise print one line: which tests will skip, and the command
#                             that installs their tools. Exits 0 either way.
#   --container               also what `make test-container` needs (buildah, podman, ...)
#   --require                 exit 1 when a tool is still missing at the end (CI)
#   TOOLS_INSTALL=no          never run apt-get, only report (e.g. on your own workstation)
set -euo pipefail

container=0
require=0
for arg in "$@"; do
    case "$arg" in
        --container) container=1 ;;
        --require) require=1 ;;
        *) echo "tools.sh: unknown argument '$arg' (use --container, --require)" >&2; exit 2 ;;
    esac
done

# probe|Debian packages|tests that skip without it. A probe is a command on PATH, or an
# absolute path that must be executable.
tools=(
    "promtool|prometheus|alert-rule unit tests and PromQL checks (tests/deploy, tests/service/test_http.py)"
    "prometheus|prometheus|the end-to-end alerting test (tests/deploy/test_e2e_alerting.py)"
    "amtool|prometheus-alertmanager|the Alertmanager config check (tests/deploy/test_prometheus_rules.py)"
    "docker-compose|docker-compose|docker-compose config (tests/deploy/test_docker.py)"
    "shellcheck|shellcheck|the shell-script lint (tests/deploy/test_docker.py)"
    "chromium|chromium|the HTML report rendering (tests/anomaly/evaluation/test_report_render.py)"
)
if [ "$container" = 1 ]; then
    # The container tests build the CPU image with buildah on a debootstrapped base and run it
    # with buildah and podman (runc; CNI networks with DNS through dnsname and dnsmasq).
    tools+=(
        "buildah|buildah|the container tests (make test-container)"
        "podman|podman runc|the container tests (make test-container)"
        "debootstrap|debootstrap|the container tests (make test-container)"
        "/usr/lib/cni/dnsname|golang-github-containernetworking-plugin-dnsname dnsmasq-base|the compose-pair container test (make test-container)"
    )
fi

present() {
    case "$1" in
        /*) [ -x "$1" ] ;;
        *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
    esac
}

# Fills the arrays `missing` (probes), `packages` (deduplicated) and `skipping` (test areas).
scan() {
    missing=() packages=() skipping=()
    local entry probe pkgs what pkg area
    for entry in "${tools[@]}"; do
        IFS='|' read -r probe pkgs what <<<"$entry"
        present "$probe" && continue
        missing+=("${probe##*/}")
        for pkg in $pkgs; do
            [[ " ${packages[*]} " == *" $pkg "* ]] || packages+=("$pkg")
        done
        area="$what"
        [[ " ${skipping[*]} " == *" $area "* ]] || skipping+=("$area")
    done
}

scan
[ ${#missing[@]} -eq 0 ] && exit 0

# Who may run apt-get: root, or a user with passwordless sudo.
why=""
sudo=()
if [ "${TOOLS_INSTALL:-yes}" = no ]; then
    why="TOOLS_INSTALL=no"
elif ! command -v apt-get >/dev/null 2>&1; then
    why="apt-get not found"
elif [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        why="not root and sudo needs a password"
    fi
fi

if [ -z "$why" ]; then
    echo "tools: installing ${packages[*]} (for ${missing[*]}) with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if "${sudo[@]}" apt-get update -qq \
        && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" \
            >/dev/null; then
        hash -r
        scan
        [ ${#missing[@]} -eq 0 ] && exit 0
        why="still missing after apt-get install"
    else
        why="apt-get install failed"
    fi
fi

joined=$(printf '%s; ' "${skipping[@]}")
echo "tools: ${missing[*]} not found ($why): these tests will skip: ${joined%; };" \
    "install their tools with: sudo apt-get install -y --no-install-recommends ${packages[*]}"
[ "$require" = 1 ] && exit 1
exit 0
