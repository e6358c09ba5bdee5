# The Kubeforge project image: the operator (kopf), the MLflow server, the `kubeforge` CLI and the
# pipeline components' runtime. Build with `make image` (docker or podman).

# Any Debian bookworm image with Python 3.11 and its venv module: the public slim image by
# default; `make image` builds a local one (mmdebstrap) when no registry answers.
ARG BASE=python:3.11.14-slim-bookworm

# --- requirements: the project's dependency list, read from pyproject.toml ---
FROM ${BASE} AS requirements
COPY pyproject.toml /src/
RUN python3 -c "import tomllib; print(*tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /requirements.txt

# --- deps: the pinned dependencies alone, rebuilt only when that list or a pin changes ---
FROM ${BASE} AS deps
# Set only by `make image` when it mounts the machine's CA bundle (intercepted TLS).
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/kubeforge && /opt/kubeforge/bin/pip install "pip==26.3"
WORKDIR /src
COPY hack/constraints.txt hack/constraints.txt
COPY --from=requirements /requirements.txt requirements.txt
RUN /opt/kubeforge/bin/pip install -c hack/constraints.txt -r requirements.txt

# --- wheel: the project itself ---
FROM deps AS wheel
COPY pyproject.toml README.md ./
COPY core core
COPY cli cli
COPY testing testing
COPY components components
COPY pipelines pipelines
COPY operators operators
RUN /opt/kubeforge/bin/pip wheel --no-deps -w /wheels . \
    && /opt/kubeforge/bin/pip install --no-deps /wheels/*.whl \
    && /opt/kubeforge/bin/pip check

# --- runtime: the virtualenv only, as a non-root user ---
FROM ${BASE}
RUN groupadd --gid 10001 kubeforge \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubeforge
COPY --from=deps /opt/kubeforge /opt/kubeforge
COPY --from=wheel /wheels /wheels
RUN PIP_NO_CACHE_DIR=1 /opt/kubeforge/bin/pip install --no-deps --no-compile /wheels/*.whl && rm -rf /wheels
ENV PATH=/opt/kubeforge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
# Numeric, so Kubernetes can verify runAsNonRoot without resolving the name.
USER 10001:10001
CMD ["kubeforge", "--help"]
