# alert-broker runtime image. Models and schemas are package data inside the wheel: nothing is
# downloaded at run time. CPU torch by default; for CUDA build with
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126
# run with the NVIDIA container runtime and set device: cuda (the Helm chart's gpu.enabled
# does both the request and the setting).
ARG PYTHON_IMAGE=python:3.11-slim

# -- build: the project's wheel (no training tools, no embedded broker) ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY broker ./broker
COPY filters ./filters
COPY schemas ./schemas
RUN pip wheel --no-deps --wheel-dir /wheels .

# -- runtime: the wheel and what inference needs, as a non-root user --------------------------
FROM ${PYTHON_IMAGE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# A read-only root filesystem works: every library that writes (matplotlib, astropy, torch)
# is pointed at /tmp, which the chart mounts as an emptyDir.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp TMPDIR=/tmp MPLCONFIGDIR=/tmp XDG_CACHE_HOME=/tmp XDG_CONFIG_HOME=/tmp TORCH_HOME=/tmp
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=* \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0 \
    && pip install /wheels/*.whl \
    && rm -rf /wheels
COPY config/example.yaml /etc/alert-broker/config.yaml
RUN useradd --no-create-home --uid 10001 broker
USER 10001
WORKDIR /tmp
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
ENTRYPOINT ["alert-broker"]
CMD ["run", "--config", "/etc/alert-broker/config.yaml", "--metrics-port", "9108"]
