#!/usr/bin/env bash
# Build (or reuse) the real Kubernetes binaries the tests run, each a plain `go build` through the
# Go module proxy:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#                                     from k8s.io/kubernetes (kube/go.mod), with the release's
#                                     version string linked in (else it reads v0.0.0-master)
#   etcd                              from go.etcd.io/etcd/server/v3 (etcd/)
#   helm                              from helm.sh/helm/v3 (helm/go.mod)
#   kwok                              from sigs.k8s.io/kwok (simulated nodes and pod lifecycles)
#   training-operator                 from github.com/kubeflow/training-operator (PyTorchJob)
#   kueue                             from sigs.k8s.io/kueue (job queueing and quotas)
#   jobset, trainer-controller-manager from sigs.k8s.io/jobset and github.com/kubeflow/trainer/v2
#                                     (Kubeflow Trainer v2: TrainJob)
#   cluster-autoscaler                from k8s.io/autoscaler/cluster-autoscaler (autoscaler/go.mod,
#                                     kwok cloud provider)
#   with KUBEFORGE_NODE=1, the real node: kubelet and kube-proxy (k8s.io/kubernetes too),
#   coredns (coredns/), crictl (sigs.k8s.io/cri-tools), pause (kubernetes' pause.c, gcc -static)
# kwok, the training operator, Kueue, JobSet and Trainer are built inside their own downloaded module, so their go.mod
# (and any replace directives in it) applies exactly as upstream builds it.
# Binaries are cached under ${KUBEFORGE_CACHE:-~/.cache/kubeforge}/<versions>/bin, so a second
# run builds nothing. Prints the bin directory on the last line of stdout.
set -euo pipefail

# Bump when the way a binary is built changes (flags, patches), so caches are rebuilt.
RECIPE=2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
modver() { # modver DIR MODULE -> the version DIR/go.mod pins for MODULE
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$here/$1/go.mod"
}
k8s="$(modver kube k8s.io/kubernetes)"
etcd="$(modver etcd go.etcd.io/etcd/server/v3)"
helm="$(modver helm helm.sh/helm/v3)"
# Built inside their own modules, at the versions crds/go.mod pins (the tests read them there too).
kwok="$(modver crds sigs.k8s.io/kwok)"
training_operator="$(modver crds github.com/kubeflow/training-operator)"
kueue="$(modver crds sigs.k8s.io/kueue)"
jobset="$(modver crds sigs.k8s.io/jobset)"
trainer="$(modver crds github.com/kubeflow/trainer/v2)"
coredns="$(modver coredns github.com/coredns/coredns)"
crictl=v1.34.0 # sigs.k8s.io/cri-tools (v1.35.0 is not served by the proxy)
gover="$(go env GOVERSION)"
cache="${KUBEFORGE_CACHE:-$HOME/.cache/kubeforge}"
bin="$cache/k8s-${k8s}_etcd-${etcd}_helm-${helm}_${gover}_r${RECIPE}/bin"
mkdir -p "$bin"
# One build at a time per cache (test sessions may start together).
exec 9>"$bin/.lock"
flock 9

export GOTOOLCHAIN=local GOFLAGS="-mod=mod -trimpath" CGO_ENABLED=0

minor="${k8s#v1.}"; minor="${minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

cached() { # cached NAME -> true when NAME is built already
  if [[ -x "$bin/$1" ]]; then
    echo "controlplane: $1 cached ($bin/$1)" >&2
    return 0
  fi
  echo "controlplane: building $1 ..." >&2
  return 1
}

build() { # build NAME MODULE_DIR PACKAGE [LDFLAGS]: from one of our wrapper modules
  local name="$1" dir="$2" pkg="$3" ldflags="${4:--s -w}"
  cached "$name" && return
  local start=$SECONDS
  (cd "$here/$dir" && go build -ldflags="$ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "controlplane: built $name in $((SECONDS - start))s" >&2
}

build_upstream() { # build_upstream NAME MODULE VERSION PACKAGE: inside the module itself
  local name="$1" module="$2" version="$3" pkg="$4"
  # Each carries its version beside it, so a new pin rebuilds that binary alone.
  if [[ "$(cat "$bin/.$name.version" 2>/dev/null)" != "$version" ]]; then
    rm -f "$bin/$name"
  fi
  cached "$name" && return
  local start=$SECONDS dir
  dir="$(cd "$here/crds" && go mod download -json "$module@$version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir" ]] || { echo "controlplane: cannot download $module@$version" >&2; exit 1; }
  (cd "$dir" && GOFLAGS="-mod=readonly -trimpath" go build -ldflags="-s -w" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$version" > "$bin/.$name.version"
  echo "controlplane: built $name in $((SECONDS - start))s" >&2
}

build etcd etcd .
build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build kube-controller-manager kube k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build kube-scheduler kube k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
build kubectl kube k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"
build helm helm helm.sh/helm/v3/cmd/helm
build_upstream kwok sigs.k8s.io/kwok "$kwok" ./cmd/kwok
build_upstream training-operator github.com/kubeflow/training-operator \
  "$training_operator" ./cmd/training-operator.v1
build_upstream kueue sigs.k8s.io/kueue "$kueue" ./cmd/kueue
build_upstream jobset sigs.k8s.io/jobset "$jobset" .
build_upstream trainer-controller-manager github.com/kubeflow/trainer/v2 "$trainer" \
  ./cmd/trainer-controller-manager
# Cluster Autoscaler 1.33 with its kwok cloud provider alone (build tag kwok); autoscaler/go.mod
# carries upstream's replace block. Its module is not in the checksum database.
GONOSUMDB=k8s.io/autoscaler GOFLAGS="$GOFLAGS -tags=kwok" \
  build cluster-autoscaler autoscaler k8s.io/autoscaler/cluster-autoscaler
# The real node (KUBEFORGE_NODE=1: `make test-node`, `make cluster`): kubelet and kube-proxy,
# CoreDNS (our wrapper, only the plugins the node uses), crictl, and the sandbox ("pause")
# process compiled statically from the kubernetes module's own source.
if [[ "${KUBEFORGE_NODE:-0}" == 1 ]]; then
  build kubelet kube k8s.io/kubernetes/cmd/kubelet "$kube_ldflags"
  build kube-proxy kube k8s.io/kubernetes/cmd/kube-proxy "$kube_ldflags"
  build coredns coredns .
  build_upstream crictl sigs.k8s.io/cri-tools "$crictl" ./cmd/crictl
  if ! cached pause; then
    pause_dir="$(cd "$here/kube" && go mod download -json "k8s.io/kubernetes@$k8s" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    gcc -Os -static -DVERSION=v3.10-kubeforge -o "$bin/pause.tmp" \
      "$pause_dir/build/pause/linux/pause.c"
    strip "$bin/pause.tmp"
    mv "$bin/pause.tmp" "$bin/pause"
  fi
fi
echo "$bin"
