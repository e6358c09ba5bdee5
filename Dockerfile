# The Kubeforge project image: the operator (kopf), the MLflow server, the `kubeforge` CLI and the
# pipeline components' runtime. Build with `make image` (docker, podman, or buildah alone).
#
# One virtualenv in the final stage, built in place: the dependencies in one layer (keyed by the
# dependency list and hack/constraints.txt only), the project's wheel in a small layer above it,
# so a code change rebuilds only that. pip's cache is a build mount, never a layer; `make image`
# gives pip a wheelhouse of the pinned wheels instead of the index (PIP_FIND_LINKS, PIP_NO_INDEX).

# Any Debian bookworm image with Python 3.11 and its venv module: the public slim image by
# default; `make image` builds a local one (mmdebstrap) when no registry answers.
ARG BASE=python:3.11.14-slim-bookworm

# --- requirements: the project's dependency list, read from pyproject.toml ---
FROM ${BASE} AS requirements
COPY pyproject.toml /src/
RUN python3 -c "import tomllib; print(*tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /requirements.txt

# --- wheel: the project itself (pip's build isolation fetches setuptools) ---
FROM ${BASE} AS wheel
# Set only by `make image` when it mounts the machine's CA bundle (intercepted TLS).
ARG PIP_CERT
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY cli cli
COPY testing testing
COPY components components
COPY pipelines pipelines
COPY operators operators
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/build && /opt/build/bin/pip wheel --no-deps -w /wheels .

# --- runtime: the virtualenv only, owned by root, run as a non-root user ---
FROM ${BASE}
ARG PIP_CERT
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --gid 10001 kubeforge \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubeforge
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/kubeforge && /opt/kubeforge/bin/pip install "pip==26.3"
COPY hack/constraints.txt /opt/kubeforge/constraints.txt
COPY --from=requirements /requirements.txt /opt/kubeforge/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/kubeforge/bin/pip install -c /opt/kubeforge/constraints.txt -r /opt/kubeforge/requirements.txt
COPY --from=wheel /wheels /opt/kubeforge/wheels
RUN /opt/kubeforge/bin/pip install --no-deps --no-cache-dir /opt/kubeforge/wheels/*.whl \
    && /opt/kubeforge/bin/pip check \
    && rm -rf /opt/kubeforge/wheels
ENV PATH=/opt/kubeforge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
# Numeric, so Kubernetes can verify runAsNonRoot without resolving the name.
USER 10001:10001
# Pods that give only `args` run a kubeforge command (the served model's Deployment and KServe
# container: `serve models:/...`); the chart, the run's Job and training pods set `command`.
ENTRYPOINT ["kubeforge"]
CMD ["--help"]
