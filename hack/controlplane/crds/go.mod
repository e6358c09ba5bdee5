// Module crds pins the upstream modules the tests read from the Go module cache after
// `go mod download`: the Kubeflow training-operator (its PyTorchJob CRD,
// manifests/base/crds/kubeflow.org_pytorchjobs.yaml, and the operator itself, which build.sh
// builds inside that module), kwok (built the same way; its Stage configs under
// kustomize/stage/), and the Cluster API MachineDeployment and Machine CRDs (config/crd/bases/).
module kubeforge.io/hack/controlplane/crds

go 1.25.0

require (
	// KServe's InferenceService CRD (config/crd/full/), for deploy's target=kserve.
	github.com/kserve/kserve v0.15.0
	github.com/kubeflow/trainer/v2 v2.3.0
	github.com/kubeflow/training-operator v1.9.3
	// The Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs
	// (example/prometheus-operator-crd/), for the chart's monitoring objects.
	github.com/prometheus-operator/prometheus-operator v0.85.0
	sigs.k8s.io/cluster-api v1.13.6
	sigs.k8s.io/jobset v0.12.0
	sigs.k8s.io/kueue v0.17.1
	sigs.k8s.io/kwok v0.8.0
)
