#!/usr/bin/env bash
# Build the local stand-in for the public base image, from Debian packages only: debootstrap bookworm (minbase)
# with Debian's python3.11 and python3-venv, committed with buildah as localhost/modsnet-base:bookworm.
# Used where the public registry is out of reach (`make image` passes it as BASE); does nothing if present.
set -euo pipefail
IMAGE=${1:-modsnet-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUILDAH=(buildah --storage-driver vfs)

if "${BUILDAH[@]}" images --quiet "localhost/$IMAGE" >/dev/null 2>&1; then
    echo "base image localhost/$IMAGE is present"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# minbase: essential + apt, no compilers; python3-venv brings ensurepip; ca-certificates for pip's TLS.
debootstrap --variant=minbase --include=python3.11,python3-venv,ca-certificates \
    bookworm "$work/rootfs" "$MIRROR"
# What a slim image leaves out: apt's lists and caches, docs, man pages.
rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin \
    "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/info/*
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
container=$("${BUILDAH[@]}" from scratch)
"${BUILDAH[@]}" add "$container" "$work/rootfs.tar" /
"${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' "$container"
"${BUILDAH[@]}" commit --rm "$container" "$IMAGE"
echo "built base image localhost/$IMAGE"
