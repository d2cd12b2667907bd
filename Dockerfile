# ModsNet: one image for the four services (`modsnet serve query|recommender|knowledge|storage`).
#
#   make image                      # builds modsnet:dev here (buildah, a Debian-built local base; see docs/deploy.md)
#   docker build -t modsnet .       # elsewhere: the public base below, torch's CPU build from PyTorch's index
#   docker build --build-arg ONNXRUNTIME="onnxruntime-gpu[cuda,cudnn]==1.31.1" -t modsnet-cuda .
#                                   # the recommender's CUDA variant (k8s/overlays/gpu): ONNX Runtime on CUDA
#
# The default base is python:3.11.10-slim-bookworm pinned by digest (from a Renovate-kept digest list; check
# it with `docker buildx imagetools inspect python:3.11.10-slim-bookworm` and let Renovate/Dependabot bump it).
# Any Debian bookworm image with python3.11 and python3-venv works as BASE (docker/local-base.sh makes one).
ARG BASE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

# -- builder: the wheel, then a venv holding it and the pinned runtime dependencies -------------------------
FROM ${BASE} AS builder
# torch's CPU build: PyTorch's CPU index (a plain `torch` from PyPI pulls GBs of CUDA libraries), or a folder
# of wheels mounted into the build (make image mounts the CPU wheel this machine has: PIP_FIND_LINKS).
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
ARG PIP_CERT=
# The CUDA variant swaps onnxruntime for onnxruntime-gpu (CUDA and cuDNN come as pip packages with it).
ARG ONNXRUNTIME=onnxruntime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    PIP_FIND_LINKS=${PIP_FIND_LINKS} \
    PIP_CERT=${PIP_CERT}
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY protos/ protos/
COPY modsnet/ modsnet/
COPY services/ services/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# requirements.lock pins the whole tree (dev tools too): as constraints it fixes the versions of what the
# wheel needs without installing the rest. onnxruntime is pinned there; the CUDA variant's package is not.
RUN python3 -m venv /opt/modsnet \
    && /opt/modsnet/bin/pip install --no-cache-dir "pip==26.3" "setuptools==84.2.1" \
    && /opt/modsnet/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation -w /tmp/dist . \
    && if [ "${ONNXRUNTIME}" = onnxruntime ]; then \
         /opt/modsnet/bin/pip install --no-cache-dir -c requirements.lock /tmp/dist/modsnet-*.whl; \
       else \
         grep -v '^onnxruntime==' requirements.lock > /tmp/constraints.txt \
         && /opt/modsnet/bin/pip install --no-cache-dir -c /tmp/constraints.txt /tmp/dist/modsnet-*.whl \
         && /opt/modsnet/bin/pip uninstall --yes onnxruntime \
         && /opt/modsnet/bin/pip install --no-cache-dir -c /tmp/constraints.txt "${ONNXRUNTIME}"; \
       fi \
    && /opt/modsnet/bin/pip uninstall --yes pip setuptools

# -- runtime: the base, the venv, a non-root user; nothing written outside /data and /tmp ------------------
FROM ${BASE}
LABEL org.opencontainers.image.title="modsnet" \
      org.opencontainers.image.description="ModsNet model search: query, recommender, knowledge and storage services" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin modsnet \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=builder /opt/modsnet /opt/modsnet
# Read-only root filesystem: HOME, temp files and the embedded backends' data live on /tmp and /data (volumes
# in Kubernetes); no .pyc is written at run time (the venv's were compiled at build).
ENV PATH=/opt/modsnet/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MODSNET_HOME=/data
VOLUME ["/data"]
USER 10001:10001
WORKDIR /data
# gRPC ports of query, recommender, knowledge, storage (each service listens on MODSNET_PORT) and /metrics.
EXPOSE 50051 50052 50053 50054 9090
ENTRYPOINT ["modsnet"]
CMD ["serve", "query"]
