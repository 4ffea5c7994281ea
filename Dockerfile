# CPU image running the embedded defaults (bundled tiny.en, embedded diariser, offline summariser).
# A plain mirror of the README's install steps (`make setup`): a venv, PyTorch's CPU build from
# PyTorch's own index, then requirements.txt. Build tools stay in the first stage; the image runs
# as an unprivileged user. GPU image: Dockerfile.gpu.
#
#   docker build -t meeting-assistant .
#   docker run -p 8000:8000 -v meetings:/data meeting-assistant
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/app app \
 && mkdir -p /data \
 && chown app:app /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml app.py worker.py observability.py ./
COPY services ./services
COPY integrations ./integrations
COPY static ./static
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 PORT=8000 MEETING_LOG_PATH=/data/meetings.jsonl DATA_DIR=/data
USER app
VOLUME ["/data"]
EXPOSE 8000
# Shell form, so ${PORT} is the running container's (docker run -e PORT=9000 moves it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT:-8000}/health', timeout=4); sys.exit(0)"
CMD ["python", "app.py"]
