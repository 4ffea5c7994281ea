"""Names in the environment that look meant for this program but are no setting (typos, most likely)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from services.settings import ENV_FILE, Settings

# Environment names with these prefixes are meant for this program: one that is not a setting is
# most likely misspelt. (OPENAI_/ANTHROPIC_ are left out: their SDKs read names of their own.)
PROJECT_PREFIXES = (
    "ASR_", "LLM_", "VLLM_", "XAI_", "AZURE_OPENAI_", "GOOGLE_GEMINI_", "DIARIZATION_", "PYANNOTE_", "NEMO_",
    "MEETING_", "WORKFLOW_", "TTS_", "INFERENCE_", "ORCHESTRATOR_", "AUDIO_", "WS_", "MAX_", "REDIS_", "WORKER_",
    "ADMISSION_",
)  # fmt: skip


def unknown_setting_warnings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ENV_FILE
) -> list[str]:
    """One warning per name that looks meant for this program but is no setting (a typo, most likely).

    Checked: every name in `env_file` (only this program reads it), and environment names with
    one of `PROJECT_PREFIXES`.
    """
    known = {name.upper() for name in Settings.model_fields}
    environ = os.environ if environ is None else environ
    names = {name.upper(): "environment" for name in environ if name.upper().startswith(PROJECT_PREFIXES)}
    if env_file is not None and Path(env_file).is_file():
        names.update({name.upper(): str(env_file) for name in dotenv_values(env_file)})
    warnings = []
    for name, source in sorted(names.items()):
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} (from {source}) is not a setting of the meeting assistant and is ignored{hint}")
    return warnings
