#!/usr/bin/env bash
# Build (or reuse) the real control-plane binaries the tests run:
#   kube-apiserver, kube-scheduler, kubectl  from k8s.io/kubernetes   (kube/go.mod)
#   etcd                                     from go.etcd.io/etcd/server/v3 (etcd/)
#   helm                                     from helm.sh/helm/v3     (helm/go.mod)
# Each is a plain `go build` through the Go module proxy. Binaries are cached under
# ${KUBEFORGE_CACHE:-~/.cache/kubeforge}/<versions>/bin, so a second run builds nothing.
# Prints the bin directory on the last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
modver() { # modver DIR MODULE -> the version DIR/go.mod pins for MODULE
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$here/$1/go.mod"
}
k8s="$(modver kube k8s.io/kubernetes)"
etcd="$(modver etcd go.etcd.io/etcd/server/v3)"
helm="$(modver helm helm.sh/helm/v3)"
gover="$(go env GOVERSION)"
cache="${KUBEFORGE_CACHE:-$HOME/.cache/kubeforge}"
bin="$cache/k8s-${k8s}_etcd-${etcd}_helm-${helm}_${gover}/bin"
mkdir -p "$bin"

export GOTOOLCHAIN=local GOFLAGS="-mod=mod -trimpath" CGO_ENABLED=0

build() { # build NAME MODULE_DIR PACKAGE
  local name="$1" dir="$2" pkg="$3"
  if [[ -x "$bin/$name" ]]; then
    echo "controlplane: $name cached ($bin/$name)" >&2
    return
  fi
  echo "controlplane: building $name from $pkg ..." >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -ldflags="-s -w" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "controlplane: built $name in $((SECONDS - start))s" >&2
}

build etcd etcd .
build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver
build kubectl kube k8s.io/kubernetes/cmd/kubectl
build kube-scheduler kube k8s.io/kubernetes/cmd/kube-scheduler
build helm helm helm.sh/helm/v3/cmd/helm
echo "$bin"
