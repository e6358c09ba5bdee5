# The Kubeforge project image: the operator (kopf), the MLflow server, the `kubeforge` CLI and the
# pipeline components' runtime. Build with `make image` (docker or podman).

# --- build: install the project and its pinned dependencies into a virtualenv ---
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/kubeforge && /opt/kubeforge/bin/pip install "pip==26.3"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hack/constraints.txt hack/constraints.txt
COPY core core
COPY cli cli
COPY testing testing
COPY components components
COPY pipelines pipelines
COPY operators operators
RUN /opt/kubeforge/bin/pip install -c hack/constraints.txt . \
    && /opt/kubeforge/bin/pip check

# --- runtime: the virtualenv only, as a non-root user ---
FROM python:3.11.14-slim-bookworm
RUN groupadd --gid 10001 kubeforge \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubeforge
COPY --from=build /opt/kubeforge /opt/kubeforge
ENV PATH=/opt/kubeforge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
# Numeric, so Kubernetes can verify runAsNonRoot without resolving the name.
USER 10001:10001
CMD ["kubeforge", "--help"]
