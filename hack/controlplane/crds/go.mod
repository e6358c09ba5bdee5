// Module crds pins the Kubeflow training-operator release whose PyTorchJob CRD
// (manifests/base/crds/kubeflow.org_pytorchjobs.yaml) the tests install. Nothing is built
// from it: the tests read the CRD from the Go module cache after `go mod download`.
module kubeforge.io/hack/controlplane/crds

go 1.25.0

require github.com/kubeflow/training-operator v1.9.2
