#!/usr/bin/env bash
# Build the project image with buildah (no Docker engine): `make image`.
#
# The base is the public python:3.11.14-slim-bookworm image when a registry answers; otherwise a
# Debian bookworm root filesystem with Debian's Python 3.11 built here by mmdebstrap and cached
# (BASE=... picks one explicitly). buildah keeps its layers, so a change to the code rebuilds only
# the last layer. The machine's CA bundle is mounted into the build for pip (TLS may be
# intercepted). IMPORT=1 also imports the image into the running node's containerd.
#
# Prints the image name on the last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
image="${IMAGE:-ghcr.io/kubeforge/kubeforge:0.1.0}"
public_base="docker.io/library/python:3.11.14-slim-bookworm"
local_base="localhost/kubeforge-base:bookworm-py3.11"
cache="${KUBEFORGE_CACHE:-$HOME/.cache/kubeforge}/image"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

# buildah writes /etc/cni/net.d/cni.lock even for builds without networking: leave no trace.
if [[ ! -e /etc/cni ]]; then
  trap 'rm -rf /etc/cni' EXIT
fi

for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "error: make image needs $tool (make node-deps)" >&2; exit 1; }
done

local_debian_base() {
  if buildah inspect --type image "$local_base" >/dev/null 2>&1; then
    echo "image: base $local_base cached" >&2
    return
  fi
  local start=$SECONDS rootfs="$cache/bookworm-python3.11.tar"
  echo "image: building $local_base with mmdebstrap ..." >&2
  mmdebstrap --variant=minbase --mode=root --format=tar --aptopt='APT::Install-Recommends "false"' \
    --include=python3,python3-venv,ca-certificates \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc/* "$1"/usr/share/man/*' \
    bookworm "$rootfs.tmp" >&2
  mv "$rootfs.tmp" "$rootfs"
  local ctr
  ctr="$(buildah from scratch)"
  buildah add "$ctr" "$rootfs" / >/dev/null
  buildah config --env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 "$ctr"
  buildah commit -q --rm "$ctr" "$local_base" >/dev/null
  rm -f "$rootfs"
  echo "image: built $local_base in $((SECONDS - start))s" >&2
}

base="${BASE:-}"
if [[ -z "$base" ]]; then
  if buildah inspect --type image "$public_base" >/dev/null 2>&1 ||
    timeout 60 buildah pull -q "$public_base" >/dev/null 2>&1; then
    base="$public_base"
  else
    echo "image: no registry answers for $public_base; using a local Debian base" >&2
    local_debian_base
    base="$local_base"
  fi
fi

start=$SECONDS
mounts=()
if [[ -f "$ca_bundle" ]]; then
  mounts=(-v "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro" --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
fi
buildah bud --isolation chroot --layers --build-arg "BASE=$base" "${mounts[@]}" \
  -t "$image" "$repo" >&2
echo "image: built $image on $base in $((SECONDS - start))s" >&2

if [[ "${IMPORT:-0}" == 1 ]]; then
  record="${KUBEFORGE_CACHE:-$HOME/.cache/kubeforge}/node/cluster.json"
  sock="$(sed -n 's/.*"workdir": "\([^"]*\)".*/\1/p' "$record" 2>/dev/null)/containerd.sock"
  [[ -S "$sock" ]] || { echo "error: no node started by make cluster to import into" >&2; exit 1; }
  archive="$cache/image.tar"
  buildah push -q "$image" "docker-archive:$archive:$image" >&2
  ctr --address "$sock" -n k8s.io images import "$archive" >&2
  rm -f "$archive"
  echo "image: imported $image into the node's containerd" >&2
fi
echo "$image"
