# alert-broker runtime image. Models are committed artifacts: nothing is downloaded at run time.
# GPU: the torch wheel from PyPI carries CUDA; run with the NVIDIA container runtime and
# set device: cuda (the Helm chart's gpu.enabled does both the request and the setting).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 broker
WORKDIR /opt/alert-broker

COPY pyproject.toml README.md ./
COPY broker ./broker
COPY filters ./filters
COPY schemas ./schemas
COPY config ./config
# Schemas are read from the source tree beside the package, so install in place.
RUN pip install torch==2.13.0 && pip install -e '.[ml]'

USER broker
EXPOSE 9108
ENTRYPOINT ["alert-broker"]
CMD ["run", "--config", "/etc/alert-broker/config.yaml"]
