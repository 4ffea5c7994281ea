"""Diarisation backends behind `services.diarization.DiarizationService`.

- `embedded`: offline CPU default (Silero VAD + CAM++ embeddings + clustering), `embedded.py`.
- `pyannote`: pyannote.audio pipeline for GPU deployments (optional install), `pyannote_backend.py`.
- `nemo`: NVIDIA NeMo Sortformer (optional install), `nemo_backend.py`.
"""
