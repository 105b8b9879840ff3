# syntax=docker/dockerfile:1
# The relay's container image: slim Python, a virtualenv built in a separate stage, a non-root
# user, and nothing written outside /tmp and /var/lib/relay (both volumes in the Helm chart),
# so it runs with a read-only root filesystem. Build: docker build -t judicial-relay/relay .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only here, for any dependency without a wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN python -m venv /opt/relay \
    && /opt/relay/bin/pip install --no-compile . \
    # Byte-compile now: at run time the root filesystem is read-only.
    && /opt/relay/bin/python -m compileall -q /opt/relay/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="judicial-relay" \
      org.opencontainers.image.description="Judicial cross-chain relay: light-client verified queries with offline-verifiable evidence" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid relay --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin relay \
    && install -d -o relay -g relay -m 0750 /var/lib/relay \
    && install -d -m 0755 /etc/relay
COPY --from=build /opt/relay /opt/relay
ENV PATH=/opt/relay/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
# The database (SQLite mode) and scratch space are the only writable paths.
VOLUME ["/var/lib/relay", "/tmp"]
WORKDIR /var/lib/relay
USER 10001:10001
# gRPC API (TLS), grpc.health.v1 (plaintext, probes), ops (/metrics, /healthz, /readyz).
EXPOSE 7443 7080 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["relay", "health-check", "--config", "/etc/relay/relay.yaml"]
# `docker run IMAGE` runs `relay serve --config /etc/relay/relay.yaml`; other relay commands
# replace the CMD (`docker run IMAGE config validate /etc/relay/relay.yaml`).
ENTRYPOINT ["relay"]
CMD ["serve", "--config", "/etc/relay/relay.yaml"]
