# Dataflow worker image: Beam's Python SDK container with vlcurate and its pinned stack.
# Build from the repository root:
#   docker build -f docker/dataflow.Dockerfile -t REGION-docker.pkg.dev/PROJECT/repo/vlcurate:TAG .
# Not built on the development machines (no Docker engine there); a later issue checks it on GCP.
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/vlcurate
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/lock.txt \
 && pip install --no-cache-dir --no-deps -r requirements/nodeps.txt
COPY pyproject.toml README.md ./
COPY filters/ filters/
COPY pipelines/ pipelines/
COPY manifests/ manifests/
RUN pip install --no-cache-dir --no-deps .

ENV NO_ALBUMENTATIONS_UPDATE=1
# The SDK harness entry point comes from the base image.
