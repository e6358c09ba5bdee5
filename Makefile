# Kubeforge: the two commands are `make demo` and `make test`. Both set themselves up.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_VERSION := 26.3

.PHONY: demo test unit venv install lint typecheck pytest controlplane prometheus compile crds bench clean lock

# The virtualenv is rebuilt when pyproject.toml changes; the project itself is reinstalled
# (editable, strict link tree) on every run so new files are always picked up.
$(VENV)/.deps: pyproject.toml hack/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; Kubeforge needs Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "pip==$(PIP_VERSION)"
	$(PIP) install -q -c hack/constraints.txt --group test --group lint -e . --config-settings editable_mode=strict
	$(PIP) check
	touch $@

venv: $(VENV)/.deps

install: venv
	@flock $(VENV)/.install.lock $(PIP) install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

controlplane:
	@command -v go >/dev/null || { echo "error: Go is required to build the test control plane" >&2; exit 1; }
	bash hack/controlplane/build.sh >/dev/null

# The real Prometheus + promtool from Debian's package, unpacked under ~/.cache/kubeforge.
prometheus:
	bash hack/prometheus.sh >/dev/null

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

# The real node's Debian packages (and buildah/mmdebstrap for `make image`): installed once, as
# root, when any is missing (CI runs as root on a fresh machine).
NODE_DEBS := containerd runc containernetworking-plugins iptables conntrack iproute2 busybox-static \
  gcc libc6-dev buildah mmdebstrap
.PHONY: node-deps cluster cluster-down
node-deps:
	@missing=""; for p in $(NODE_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [[ -n "$$missing" ]]; then \
	  [[ "$$(id -u)" == 0 ]] || { echo "error: the real node needs:$$missing (run as root)" >&2; exit 1; }; \
	  echo "node-deps: apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# A control plane and one real node for a person; prints the KUBECONFIG line to use.
cluster: install node-deps
	@$(PY) -m kubeforge.testing.node up

# Removes everything `make cluster` started or changed on this machine.
cluster-down: install
	@$(PY) -m kubeforge.testing.node down

pytest: install controlplane prometheus
	$(VENV)/bin/pytest -m "not node"

# The tests that run real pods on a real node (kubelet, containerd, CNI, kube-proxy, CoreDNS).
# Apart from `make test` because their cold builds add minutes; .ci/run runs both.
.PHONY: test-node
test-node: install node-deps controlplane
	KUBEFORGE_NODE=1 bash hack/controlplane/build.sh >/dev/null
	$(VENV)/bin/pytest -m node

test: lint typecheck pytest

# The inner loop: every test that needs no control plane, no Go build and no Prometheus, and
# trains no model on the whole digits set (make test runs them all).
unit: install
	$(VENV)/bin/pytest -m "not cluster and not e2e and not slow" -q

demo: install
	$(VENV)/bin/kubeforge demo

compile: install
	$(VENV)/bin/kubeforge compile main -o pipelines/main/main.yaml

# Every CRD is generated from its typed models; the chart carries identical copies.
crds: install
	$(PY) -m kubeforge.operators.gpupool.api.crd > manifests/crds/kubeforge.io_gpunodepools.yaml
	for kind in pipelines pipelineruns; do \
	  $(PY) -m kubeforge.operators.pipelineruns.api.crd $$kind > manifests/crds/kubeforge.io_$$kind.yaml; \
	done
	mkdir -p charts/kubeforge/crds && rm -f charts/kubeforge/crds/*.yaml && cp manifests/crds/*.yaml charts/kubeforge/crds/

bench: install
	$(PIP) install -q -c hack/constraints.txt --group bench && $(PIP) check
	$(PY) -m benchmarks
	$(PY) -m benchmarks.labels
	$(PY) -m benchmarks.serving $(if $(QUICK),--quick)

# Kubeforge's model server vs `mlflow models serve` of the same model at 1, 8 and 64
# clients (QUICK=1: a quarter of the requests and time).
.PHONY: bench-serving
bench-serving: install
	$(PY) -m benchmarks.serving $(if $(QUICK),--quick)

# The run time train declares (learnt from MLflow history) vs the one it then has, real training.
.PHONY: bench-runtime
bench-runtime: install
	$(PY) -m benchmarks.runtime_estimate

# GPU pool simulator: the planner vs a per-pod autoscaler and a static pool (QUICK=1: small trace).
.PHONY: bench-gpupool
bench-gpupool: install
	$(PY) -m benchmarks.gpupool $(if $(QUICK),--quick)

# Proof 5 of issue 11: one trace through a GPUNodePool and through the real Cluster Autoscaler
# (kwok provider) on the test cluster (QUICK=1: every time divided by 5, about 11 min in all).
.PHONY: bench-autoscaler
bench-autoscaler: install controlplane
	$(PY) -m benchmarks.autoscaler $(if $(QUICK),--quick)

# The project image (operator, MLflow server, components): docker or podman when installed,
# otherwise buildah with no engine at all (hack/node/image.sh: a local Debian base when no
# registry answers; IMPORT=1 loads it into the `make cluster` node's containerd).
IMAGE ?= ghcr.io/kubeforge/kubeforge:0.1.0
CONTAINER_ENGINE ?= $(shell for e in docker podman; do $$e info >/dev/null 2>&1 && command -v $$e && break; done)
.PHONY: image chart-docs
image:
	@if [[ -n "$(CONTAINER_ENGINE)" ]]; then $(CONTAINER_ENGINE) build -t $(IMAGE) .; \
	else IMAGE=$(IMAGE) bash hack/node/image.sh; fi

# The chart README (from values.yaml) and the kustomize base (rendered from the chart).
chart-docs: venv controlplane
	$(PY) hack/chart_readme.py
	HELM="$$(bash hack/controlplane/build.sh 2>/dev/null | tail -1)/helm" $(PY) hack/render_base.py

clean:
	rm -rf $(VENV) build .kubeforge .mypy_cache .ruff_cache .pytest_cache

# Re-resolve the pinned dependencies from scratch and record every version.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q "pip==$(PIP_VERSION)"
	.venv-lock/bin/pip install -q --group test --group lint .
	{ echo "# Every package version the project was last tested with (pip freeze); \`make\` installs"; \
	  echo "# with -c hack/constraints.txt so a fresh machine gets the same set. Regenerate with \`make lock\`."; \
	  .venv-lock/bin/pip freeze --exclude kubeforge; } > hack/constraints.txt
	rm -rf .venv-lock
