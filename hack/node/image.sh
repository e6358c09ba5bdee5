#!/usr/bin/env bash
# Build the project image with buildah (no Docker engine): `make image`.
#
# The base is the public python:3.11.14-slim-bookworm image when a registry answers; otherwise a
# Debian bookworm root filesystem with Debian's Python 3.11 built here by mmdebstrap and cached
# (BASE=... picks one explicitly). buildah keeps its layers, so a change to the code rebuilds only
# the last layers; after a build every intermediate image this build did not use (older builds'
# layers) is removed, so the store holds one image and its own cache. The pinned dependencies'
# wheels are kept in a wheelhouse under the cache (pip on this machine fills it when it runs
# Python 3.11; only missing wheels are downloaded) that the build installs from with no index: a
# cold build after the first downloads nothing. The machine's CA bundle is mounted for pip (TLS
# may be intercepted).
#
# SOURCE_DIGEST=... labels the image io.kubeforge.source-digest (kubeforge.testing.image uses it to
# tell a stale image). IMPORT=1 also imports the image into the running node's containerd (the
# node of `make cluster`, or CONTAINERD_SOCK), streamed without an archive on disk.
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

# Dangling images (older builds' layers and stages) that the build logged in $1 did not use.
stale_images() {
  local used
  used="$(sed -n 's/^--> \(Using cache \)\{0,1\}\([0-9a-f]\{11,64\}\)$/\2/p' "$1" | cut -c1-11 | sort -u)"
  for id in $(buildah images -q --filter dangling=true 2>/dev/null | sort -u); do
    grep -qx "${id:0:11}" <<<"$used" || echo "$id"
  done
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

# The pinned dependencies' wheels, built or fetched by this machine's pip (the same Python and
# platform as the image's), in a wheelhouse keyed by the dependency list and the constraints:
# wheels already there are not downloaded again; a change of pins starts a new wheelhouse.
fill_wheelhouse() {
  local py="${PYTHON:-python3}" requirements="$cache/requirements.txt"
  "$py" -c 'import sys, platform; sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64")' 2>/dev/null ||
    return 1
  "$py" -c "import tomllib; p = tomllib.load(open('$repo/pyproject.toml', 'rb')); print(*p['project']['dependencies'], *p['build-system']['requires'], sep='\n')" >"$requirements"
  echo "pip==$(sed -n 's/.*pip==\([0-9.]*\).*/\1/p' "$repo/Dockerfile" | head -1)" >>"$requirements"
  local key
  key="$(cat "$requirements" "$repo/hack/constraints.txt" | sha256sum | cut -c1-12)"
  wheelhouse="$cache/wheels-$key"
  for old in "$cache"/wheels-*; do
    [[ "$old" == "$wheelhouse" ]] || rm -rf "$old"
  done
  if [[ -f "$wheelhouse/.complete" ]]; then
    echo "image: wheelhouse $key cached ($(du -sh "$wheelhouse" | cut -f1))" >&2
    return 0
  fi
  local start=$SECONDS report="$cache/wheelhouse.log"
  mkdir -p "$wheelhouse"
  "$py" -m pip wheel --find-links "$wheelhouse" -w "$wheelhouse" \
    -c "$repo/hack/constraints.txt" -r "$requirements" >"$report" 2>&1 || { tail -20 "$report" >&2; return 1; }
  touch "$wheelhouse/.complete"
  echo "image: wheelhouse $key of $(ls "$wheelhouse" | wc -l) wheels ($(du -sh "$wheelhouse" | cut -f1)) in $((SECONDS - start))s" >&2
}

start=$SECONDS
args=(--isolation chroot --layers --force-rm --build-arg "BASE=$base")
wheelhouse=""
if fill_wheelhouse; then
  args+=(-v "$wheelhouse:/var/cache/kubeforge-wheels:ro" --build-arg PIP_FIND_LINKS=/var/cache/kubeforge-wheels --build-arg PIP_NO_INDEX=1)
else
  echo "image: no wheelhouse (needs Python 3.11 on x86_64 here); pip downloads inside the build" >&2
fi
if [[ -f "$ca_bundle" ]]; then
  args+=(-v "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro" --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
fi
if [[ -n "${SOURCE_DIGEST:-}" ]]; then
  args+=(--label "io.kubeforge.source-digest=$SOURCE_DIGEST")
fi
log="$cache/build.log"
buildah bud "${args[@]}" -t "$image" "$repo" 2>&1 | tee "$log" >&2
size="$(buildah images --format '{{.Size}}' "$image" | head -1)"
echo "image: built $image ($size) on $base in $((SECONDS - start))s" >&2
stale="$(stale_images "$log")"
if [[ -n "$stale" ]]; then
  # shellcheck disable=SC2086 # one ID per word
  buildah rmi $stale >/dev/null 2>&1 || true
  echo "image: removed $(wc -w <<<"$stale") stale intermediate image(s)" >&2
fi

if [[ "${IMPORT:-0}" == 1 ]]; then
  sock="${CONTAINERD_SOCK:-}"
  if [[ -z "$sock" ]]; then
    record="${KUBEFORGE_CACHE:-$HOME/.cache/kubeforge}/node/cluster.json"
    sock="$(sed -n 's/.*"workdir": "\([^"]*\)".*/\1/p' "$record" 2>/dev/null)/containerd.sock"
  fi
  [[ -S "$sock" ]] || { echo "error: no node started by make cluster to import into" >&2; exit 1; }
  start=$SECONDS
  # A docker archive on a pipe: no copy of the image on disk between the two stores.
  buildah push -q "$image" "docker-archive:/dev/stdout:$image" |
    ctr --address "$sock" -n k8s.io images import - >&2
  echo "image: imported $image into the node's containerd in $((SECONDS - start))s" >&2
fi
echo "$image"
