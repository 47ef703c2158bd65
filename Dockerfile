# vigil: one image, several commands (api, ingest, worker). CPU by default:
#   docker build -t vigil .
# GPU (CUDA wheels of the same torch version from PyPI):
#   docker build --build-arg TORCH_INDEX=https://pypi.org/simple -t vigil:gpu .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/vigil
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY service ./service
COPY cli ./cli
# torch + torchvision first from the chosen index (CPU wheels by default, so the image stays ~1.5 GB, not ~6 GB);
# the versions match pyproject's pins, which "+cpu" builds satisfy.
RUN /opt/vigil/bin/pip install --index-url "${TORCH_INDEX}" "torch==2.14.1" "torchvision==0.29.1" \
 && /opt/vigil/bin/pip install .

FROM ${PYTHON_IMAGE} AS runtime
# No compilers here: only the venv built above. PyAV and OpenCV wheels bundle their own FFmpeg.
COPY --from=build /opt/vigil /opt/vigil
RUN useradd --create-home --uid 10001 vigil \
 && mkdir -p /data/registry /data/footage /data/jobs \
 && chown -R vigil:vigil /data
USER vigil
WORKDIR /home/vigil
ENV PATH=/opt/vigil/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VIGIL_STORE__ROOT=/data/registry \
    VIGIL_FOOTAGE_ROOT=/data/footage
EXPOSE 8000 9100
# Each command's own health: the API answers /healthz; ingest and worker keep a heartbeat key in Redis.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["vigil", "health"]
CMD ["vigil", "api", "--host", "0.0.0.0"]
