#!/usr/bin/env bash
# Make the real Prometheus server and promtool from Debian's `prometheus` package available to
# the tests, without root and without a service manager:
#   apt-get download prometheus   (the version apt's candidate names)
#   dpkg-deb -x                    into ${KUBEFORGE_CACHE:-~/.cache/kubeforge}/prometheus-<version>/
# A second run finds the cached tree and downloads nothing. Missing or stale package lists are
# refreshed with `apt-get update` (as root, or through `sudo -n`); when the .deb still cannot be
# downloaded, `apt-get install prometheus` is the fallback, and /usr/bin is used. PROMETHEUS_BIN_DIR set to a directory holding both binaries skips all of it.
# Prints the directory that holds `prometheus` and `promtool` on the last line of stdout.
set -euo pipefail

cache="${KUBEFORGE_CACHE:-$HOME/.cache/kubeforge}"
have_both() { [[ -x "$1/prometheus" && -x "$1/promtool" ]]; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

if [[ -n "${PROMETHEUS_BIN_DIR:-}" ]]; then
  have_both "$PROMETHEUS_BIN_DIR" || { echo "prometheus: no prometheus/promtool in PROMETHEUS_BIN_DIR=$PROMETHEUS_BIN_DIR" >&2; exit 1; }
  echo "$PROMETHEUS_BIN_DIR"
  exit 0
fi
command -v apt-get >/dev/null || { echo "prometheus: needs Debian's apt (or set PROMETHEUS_BIN_DIR)" >&2; exit 1; }

candidate() { apt-cache policy prometheus 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}'; }
version="$(candidate)"
if [[ -z "$version" ]]; then
  echo "prometheus: apt knows no prometheus package; refreshing the package lists" >&2
  as_root apt-get update -qq >&2 || true
  version="$(candidate)"
fi
[[ -n "$version" ]] || { echo "prometheus: Debian's apt offers no prometheus package here" >&2; exit 1; }

# download_and_unpack VERSION: apt-get download + dpkg-deb -x into the cache; prints the bin dir.
download_and_unpack() {
  local version="$1" dest work
  dest="$cache/prometheus-${version//[^A-Za-z0-9.+-]/_}"
  if have_both "$dest/usr/bin"; then
    echo "prometheus: $version cached ($dest/usr/bin)" >&2
    echo "$dest/usr/bin"
    return 0
  fi
  mkdir -p "$cache"
  work="$(mktemp -d "$cache/.prometheus-XXXXXX")"
  echo "prometheus: downloading Debian's prometheus $version ..." >&2
  if ! (cd "$work" && apt-get download -q "prometheus=$version" >&2 2>"$work/apt.log"); then
    cat "$work/apt.log" >&2
    rm -rf "$work"
    return 1
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  if ! have_both "$work/root/usr/bin"; then
    echo "prometheus: the package holds no prometheus/promtool" >&2
    rm -rf "$work"
    return 1
  fi
  # (set -e is off inside a function called from an && list: every failure returns 1 itself)
  if ! "$work/root/usr/bin/prometheus" --version >&2; then
    rm -rf "$work"
    return 1
  fi
  # Two runs at once: the first rename wins, the other tree is thrown away with $work.
  mv -T "$work/root" "$dest" 2>/dev/null || have_both "$dest/usr/bin"
  rm -rf "$work"
  echo "$dest/usr/bin"
}

download_and_unpack "$version" && exit 0
echo "prometheus: apt-get download failed; refreshing the package lists and trying again" >&2
as_root apt-get update -qq >&2 || true
version="$(candidate)"
[[ -n "$version" ]] && download_and_unpack "$version" && exit 0

echo "prometheus: apt-get download failed; falling back to apt-get install prometheus" >&2
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2
have_both /usr/bin || { echo "prometheus: apt-get install left no /usr/bin/prometheus" >&2; exit 1; }
echo /usr/bin
