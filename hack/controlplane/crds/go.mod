// Module crds pins the Kubeflow training-operator release whose PyTorchJob CRD
// (manifests/base/crds/kubeflow.org_pytorchjobs.yaml) and the Cluster API release whose
// MachineDeployment and Machine CRDs (config/crd/bases/) the tests install. Nothing is built
// from them: the tests read the CRDs from the Go module cache after `go mod download`.
module kubeforge.io/hack/controlplane/crds

go 1.25.0

require (
	github.com/kubeflow/training-operator v1.9.2
	// The Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs
	// (example/prometheus-operator-crd/), for the chart's monitoring objects.
	github.com/prometheus-operator/prometheus-operator v0.85.0
	sigs.k8s.io/cluster-api v1.13.6
)
