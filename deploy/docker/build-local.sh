#!/usr/bin/env bash
# Build the CPU image (deploy/docker/Dockerfile.cpu) with buildah where no image registry is
# reachable: the base is a minimal Debian bookworm with Debian's Python 3.11, made by
# debootstrap from Debian's package mirror, imported once as $BASE_TAG and reused after that.
# The Dockerfile is the same one users with a registry build on python:3.11-slim.
#
#   deploy/docker/build-local.sh [-t TAG] [--rebuild-base]
#
# Environment:
#   BASE_IMAGE     use this image as the base instead (no debootstrap), e.g. python:3.11-slim
#   BASE_TAG       name of the debootstrapped base (default localhost/vae-anomaly-base:bookworm)
#   DEBIAN_MIRROR  default http://deb.debian.org/debian
#   CA_BUNDLE      CA bundle mounted read-only over the build's system bundle for its RUN steps
#                  (pip trusts what the host trusts, e.g. a TLS-inspecting proxy); not copied
#                  into the image. Default: the host's /etc/ssl/certs/ca-certificates.crt;
#                  set it empty to mount none.
# Needs root, buildah, and debootstrap unless the base exists or BASE_IMAGE is given.
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=localhost/vae-anomaly:cpu
rebuild_base=0
while [ $# -gt 0 ]; do
    case "$1" in
        -t|--tag) tag="${2:?--tag needs a value}"; shift 2 ;;
        --rebuild-base) rebuild_base=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build-local.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "build-local.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and buildah's chroot isolation need it)"
command -v buildah >/dev/null || die "buildah not found: apt-get install buildah"

base_tag="${BASE_TAG:-localhost/vae-anomaly-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
isolation="${BUILDAH_ISOLATION:-chroot}"
work="" ctr=""
cleanup() {
    if [ -n "$ctr" ]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
    if [ -n "$work" ]; then
        # an interrupted debootstrap leaves /proc and /sys mounted in the root filesystem
        awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r \
            | while read -r m; do umount -l "$m" || true; done
        rm -rf --one-file-system "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # so that cleanup runs on interruption too

image_id() { buildah images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null || true; }
# After a rebuild, the previous image of a tag is unnamed: remove it (unless a container uses it).
drop_previous() {
    if [ -n "$1" ] && [ "$1" != "$(image_id "$2")" ]; then
        buildah rmi "$1" >/dev/null 2>&1 || true
    fi
}

make_base() {
    command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
    local old_base
    old_base="$(image_id "$base_tag")"
    work="$(mktemp -d "${TMPDIR:-/tmp}/vae-anomaly-base.XXXXXX")"
    echo "== debootstrap bookworm (minbase + python3) from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3 \
        bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    # What an image does not need: package caches and lists, docs (copyright files kept),
    # man pages, translations, logs.
    (cd "$work/rootfs" \
        && rm -rf var/cache/apt/* var/lib/apt/lists/* var/log/* usr/share/man/* \
                  usr/share/info/* usr/share/locale/* tmp/* \
        && find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete)
    tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
    rm -rf --one-file-system "$work/rootfs"
    ctr="$(buildah from scratch)"
    buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 \
        --label org.opencontainers.image.description="Debian bookworm minbase + python3 (debootstrap, $mirror)" \
        "$ctr"
    buildah commit --quiet --rm "$ctr" "$base_tag" >/dev/null
    ctr=""
    drop_previous "$old_base" "$base_tag"
    rm -rf --one-file-system "$work"
    work=""
}

start=$SECONDS
if [ -n "${BASE_IMAGE:-}" ]; then
    base="$BASE_IMAGE"
else
    base="$base_tag"
    if [ "$rebuild_base" -eq 1 ] || [ -z "$(image_id "$base")" ]; then
        make_base
        echo "== base $base built in $((SECONDS - start)) s"
    else
        echo "== base $base exists (--rebuild-base to make it again)"
    fi
fi

volumes=()
if [ -n "$ca_bundle" ]; then
    [ -r "$ca_bundle" ] || die "CA_BUNDLE $ca_bundle is not readable (set CA_BUNDLE= for none)"
    volumes=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro")
fi

old_id="$(image_id "$tag")"
build_start=$SECONDS
echo "== buildah bud $tag on $base (isolation $isolation)"
# docker format: the OCI image format has no HEALTHCHECK and buildah would drop it.
buildah bud --isolation "$isolation" --format docker \
    -f deploy/docker/Dockerfile.cpu --ignorefile deploy/docker/Dockerfile.cpu.dockerignore \
    --build-arg "BASE_IMAGE=$base" "${volumes[@]}" -t "$tag" .
drop_previous "$old_id" "$tag"
echo "== $tag: $(buildah images --noheading --format '{{.Size}}' "$tag"), image built in" \
     "$((SECONDS - build_start)) s, $((SECONDS - start)) s in all"
