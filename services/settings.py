"""All configuration in one typed class, read from the environment and `.env`.

Components never read the environment themselves: `app.create_app()` builds one `Settings`
(or takes one from a test) and passes each component what it needs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.errors import ConfigurationError

DEFAULT_PROVIDER_ORDER = "vllm,xai,openai,azure,anthropic,gemini,offline"
ENV_FILE = ".env"
_LOG_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}
_VLLM_FIELDS = ("vllm_base_url", "vllm_model_id", "vllm_completions_endpoint", "vllm_api_key")


class Settings(BaseSettings):
    """Every setting of the meeting assistant; names match the design documents."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
    )

    # --- server -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    max_sessions: int = Field(4, ge=1, description="Concurrent recording sessions; more are refused as busy.")
    max_session_seconds: float = Field(4 * 3600, gt=0, description="Audio seconds after which a session is stopped.")
    ws_max_message_bytes: int = Field(1 << 20, ge=1024, description="Largest WebSocket frame; bigger closes with 1009.")
    max_protocol_violations: int = Field(10, ge=1, description="Bad messages tolerated before closing with 1008.")
    max_frames_per_second: float = Field(200, gt=0, description="Binary frames per second before rate limiting.")
    ws_handshake_timeout_seconds: float = Field(
        10.0, gt=0, description="A socket that sends no start or audio this long after connecting is closed."
    )
    resume_grace_seconds: float = Field(
        30.0, ge=0, description="How long a recording whose socket dropped waits to be resumed (0: finish at once)."
    )
    session_idle_timeout_seconds: float = Field(
        120.0, gt=0, description="A recording with no audio this long is finished with what it has."
    )
    api_key: SecretStr | None = Field(
        None, description="When set, /ws requires it as ?token= (or Authorization: Bearer)."
    )
    allowed_origins: str = Field("", description="Comma-separated exact Origin allowlist for /ws; empty allows any.")
    max_upload_mb: float = Field(
        500.0, gt=0, description="Largest uploaded recording (POST /api/meetings, /v1/audio/transcriptions), in MB."
    )
    # admission by load (services/capacity.py); MAX_SESSIONS stays the hard cap
    admission_by_load: bool = Field(True, description="Admit a meeting only when the measured load says it fits.")
    admission_cpu_cores: float = Field(0.0, ge=0.0, description="Cores to plan with; 0 = this process's CPU affinity.")
    admission_cpu_target: float = Field(0.9, gt=0.0, le=1.0, description="Share of the cores live meetings may fill.")
    admission_session_cpu: float | None = Field(
        None, gt=0.0, le=10.0, description="CPU-s per audio s of a live meeting until measured; unset: calibrated."
    )
    admission_max_lag_seconds: float = Field(
        3.0, gt=0.0, description="Live audio waiting beyond the draft interval that stops admission."
    )
    admission_max_queue_wait_seconds: float = Field(
        1.0, gt=0.0, description="Live model calls waiting this long for a thread stop admission."
    )
    admission_probation_seconds: float = Field(
        10.0, ge=0.0, description="After an overload, lag and wait must stay under half their limits this long."
    )
    admission_retry_seconds: float = Field(15.0, gt=0.0, description="The retry_after hint of a busy refusal.")

    # --- ASR ----------------------------------------------------------------------------------
    asr_model_id: str = Field("", description="Whisper size name or model directory; empty uses the bundled tiny.en.")
    asr_language: str | None = None
    asr_beam_size: int = Field(5, ge=1, le=20)
    asr_careful_fallbacks: int = Field(
        1, ge=0, le=5, description="Temperature fallbacks a careful pass may try per 30 s window (Whisper's ladder)."
    )
    asr_full_context_final: bool = Field(
        True,
        description="Read the final transcript as bare faster-whisper would (30 s windows while recording) "
        "instead of keeping the live committed text.",
    )
    asr_compute_type: str = "auto"
    asr_device: Literal["auto", "cpu", "cuda"] = "auto"
    asr_cpu_threads: int = Field(1, ge=0, description="Threads per inference worker (0 = CTranslate2 default).")
    asr_partial_interval: float = Field(0.4, ge=0.05, le=5.0, description="Seconds of new audio between live decodes.")
    asr_draft_batch_size: int = Field(
        8, ge=1, le=64, description="Most live drafts (of different sessions) decoded in one model call."
    )
    asr_max_utterance_seconds: float = Field(
        8.0, ge=2.0, le=25.0, description="Utterance length without a pause that forces a commit of its settled head."
    )
    asr_min_silence_seconds: float = Field(0.5, ge=0.1, le=5.0, description="Pause that ends an utterance.")
    asr_commit_silence_seconds: float = Field(1.0, ge=0.1, le=10.0, description="Pause that commits all pending text.")
    asr_commit_window_seconds: float = Field(
        8.0, ge=1.0, le=25.0, description="Pending speech that is committed at the next utterance end."
    )
    asr_vad_threshold: float = Field(0.35, gt=0.0, lt=1.0, description="Speech probability that opens an utterance.")
    asr_partial_max_interval: float = Field(
        2.0, ge=0.05, le=10.0, description="Longest the live step interval grows to when CPU is short (drafts thinned)."
    )

    # --- audio buffer -------------------------------------------------------------------------
    audio_encryption_key: SecretStr | None = None
    audio_retention_days: float = Field(
        0.0, ge=0, description="Days a done meeting's spooled audio is kept (0: deleted as soon as it is stored)."
    )

    # --- orchestrator -------------------------------------------------------------------------
    inference_workers: int = Field(2, ge=1, le=64)
    inference_batch_size: int = Field(1, ge=1, le=64)
    max_background_audio_seconds: float = Field(
        7200.0, gt=0, description="Audio the after-stop jobs nobody waits for (clients that left) may hold at once."
    )
    orchestrator_backend: Literal["asyncio", "redis"] = Field(
        "asyncio", description="asyncio: one process; redis: gateways and `python -m worker` workers share REDIS_URL."
    )
    redis_url: SecretStr | None = Field(
        None, validate_default=True, description="Redis for ORCHESTRATOR_BACKEND=redis, e.g. redis://localhost:6379/0."
    )
    worker_max_sessions: int = Field(4, ge=1, le=256, description="Meetings one `python -m worker` serves at once.")
    worker_lease_seconds: float = Field(
        5.0, ge=1.0, le=300.0, description="A worker silent this long loses its meetings to another worker."
    )
    worker_metrics_port: int = Field(9101, ge=0, le=65535, description="A worker's /metrics port on HOST (0: none).")

    # --- diarisation --------------------------------------------------------------------------
    diarization_backend: Literal["auto", "embedded", "pyannote", "nemo", "none"] = "auto"
    diarization_min_speakers: int | None = Field(None, ge=1)
    diarization_max_speakers: int | None = Field(None, ge=1)
    hf_token: SecretStr | None = None
    pyannote_pipeline: str = "pyannote/speaker-diarization-3.1"
    nemo_diarization_enabled: bool = False

    # --- LLM ----------------------------------------------------------------------------------
    llm_provider_order: str = DEFAULT_PROVIDER_ORDER
    llm_max_retries: int = Field(3, ge=1, le=10)
    llm_backoff_seconds: float = Field(1.0, ge=0.0, le=60.0)
    llm_timeout_seconds: float = Field(30.0, gt=0.0)
    llm_deadline_seconds: float = Field(120.0, gt=0.0)
    llm_cooldown_seconds: float = Field(60.0, ge=0.0)
    llm_context_chars: int = Field(24_000, ge=2_000, description="Transcript characters per LLM call before chunking.")
    llm_offline_fallback: bool = Field(
        True, description="Summarise offline when every provider in LLM_PROVIDER_ORDER failed (false: no summary)."
    )
    vllm_base_url: str = "http://localhost:8001"
    vllm_model_id: str = Field("", description="Empty: the first model the server lists at GET /v1/models.")
    vllm_completions_endpoint: str = "/v1/chat/completions"
    vllm_api_key: SecretStr | None = None
    xai_api_key: SecretStr | None = None
    xai_base_url: str = "https://api.x.ai/v1"
    xai_model_id: str = "grok-3-mini"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model_id: str = "gpt-4o-mini"
    azure_openai_api_key: SecretStr | None = None
    azure_openai_endpoint: str | None = None
    azure_openai_deployment: str | None = None
    azure_openai_api_version: str = "2024-10-21"
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    anthropic_model_id: str = "claude-haiku-4-5"
    google_gemini_api_key: SecretStr | None = None
    google_gemini_base_url: str | None = None
    google_gemini_model_id: str = "gemini-2.0-flash"

    # --- workflows ----------------------------------------------------------------------------
    meeting_slack_webhook_url: SecretStr | None = None
    meeting_log_path: Path | None = Path("logs/meetings.jsonl")
    workflow_timeout_seconds: float = Field(10.0, gt=0.0)
    tts_enabled: bool = False
    tts_output_dir: Path | None = Field(
        None, description="With TTS_ENABLED: write <session_id>.wav here; unset plays on the default audio device."
    )

    # --- meeting store ------------------------------------------------------------------------
    data_dir: Path = Field(Path("data"), description="Holds the default SQLite meeting store (meetings.db).")
    database_url: SecretStr | None = Field(
        None, description="SQLAlchemy async URL of a shared meeting store, e.g. postgresql+asyncpg://user:pw@host/db."
    )

    @field_validator("database_url")
    @classmethod
    def _database_url_is_async(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        return SecretStr(async_database_url(value.get_secret_value()))

    @field_validator("redis_url")
    @classmethod
    def _redis_url_when_needed(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("orchestrator_backend") == "redis":
            raise ValueError("is required with ORCHESTRATOR_BACKEND=redis, e.g. redis://localhost:6379/0")
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            return _LOG_LEVEL_ALIASES.get(value, value)
        return value

    @field_validator("asr_device", "orchestrator_backend", "diarization_backend", mode="before")
    @classmethod
    def _choice_any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("audio_encryption_key")
    @classmethod
    def _fernet_key_is_valid(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                Fernet(value.get_secret_value().encode())
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    "must be a url-safe base64-encoded 32-byte Fernet key; generate one with "
                    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
                ) from exc
        return value

    @field_validator("llm_provider_order")
    @classmethod
    def _provider_order_is_known(cls, value: str) -> str:
        known = set(DEFAULT_PROVIDER_ORDER.split(","))
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise ValueError(f"unknown provider(s) {unknown or value!r}; allowed: {sorted(known)}")
        return ",".join(names)

    @property
    def provider_order(self) -> list[str]:
        return self.llm_provider_order.split(",")

    @property
    def origin_allowlist(self) -> set[str]:
        return {origin.strip().rstrip("/") for origin in self.allowed_origins.split(",") if origin.strip()}

    @property
    def vllm_configured(self) -> bool:
        """Whether anyone asked for vLLM: a VLLM_* setting or LLM_PROVIDER_ORDER differs from its default."""
        fields = type(self).model_fields
        changed = [
            name for name in (*_VLLM_FIELDS, "llm_provider_order") if getattr(self, name) != fields[name].default
        ]
        return bool(changed) and "vllm" in self.provider_order


# Plain driver names people paste from other tools, mapped to the asyncio driver we install.
_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


def async_database_url(url: str) -> str:
    """`url` with a plain `postgresql://`/`sqlite://` scheme given its asyncio driver; checks it parses."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError("must be a SQLAlchemy URL such as postgresql+asyncpg://user:password@host/db") from exc
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False) if driver else url


def load_settings(**overrides: object) -> Settings:
    """Build `Settings`, turning validation errors into one `ConfigurationError` naming each variable.

    Raises:
        ConfigurationError: a value is invalid; the message names the variable and what is allowed.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigurationError("Invalid configuration: " + "; ".join(problems)) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests build their own with `load_settings`)."""
    return load_settings()
