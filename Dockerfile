# CPU image running the embedded defaults (bundled tiny.en, embedded diariser, offline summariser).
# A plain mirror of the README's install steps (`make run`).
#
# GPU deployments: start from an nvidia/cuda runtime image with Python 3.11, install a CUDA torch
# instead of the CPU pin below, then `pip install -r requirements-gpu.txt` (pyannote.audio), and set
# ASR_DEVICE=cuda ASR_MODEL_ID=<model dir or size> HF_TOKEN=... DIARIZATION_BACKEND=pyannote.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential espeak-ng \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -r requirements.txt

COPY app.py observability.py ./
COPY services ./services
COPY integrations ./integrations
COPY static ./static

ENV HOST=0.0.0.0 PORT=8000 MEETING_LOG_PATH=/data/meetings.jsonl DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
CMD ["python", "app.py"]
