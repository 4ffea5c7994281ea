"""Prometheus metrics for the meeting assistant.

Each app instance owns its own `CollectorRegistry`, so building the app twice (as tests do)
never raises a duplicate-registration error; the process and platform collectors that the
default registry would carry are added to it, with a `meeting_assistant_build_info` series.
Labels are bounded sets (stage, provider, reason, hook, backend): never a session id.

`jobs_total` and `job_failures_total` share one set of `stage` values (`STAGES`), both series
exported at zero from the start, so `job_failures_total / jobs_total` per stage is defined.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "meeting_assistant"
# The pipeline stages that count jobs and failures. "meeting": one queued after-stop job;
# "asr_live"/"asr_final": live and stop-time transcription steps (and the final transcript's
# full-context windows); "diarization"; "summary".
STAGES = ("meeting", "asr_live", "asr_final", "diarization", "summary")
RECOVERY_RESULTS = ("recovered", "failed", "audio_lost")
UPLOAD_RESULTS = ("accepted", "rejected_too_big", "rejected_not_audio", "rejected_bad_request", "done", "failed")
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

__all__ = ["CONTENT_TYPE_LATEST", "STAGES", "Metrics", "build_info"]


def build_info() -> dict[str, str]:
    """Version labels: this project's (from pyproject.toml), Python's and the inference libraries'."""
    info = {"version": _project_version(), "python": platform.python_version()}
    for package in ("faster-whisper", "ctranslate2", "torch"):
        try:
            info[package.replace("-", "_")] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package.replace("-", "_")] = "absent"
    return info


def _project_version() -> str:
    pyproject = Path(__file__).with_name("pyproject.toml")
    try:
        import tomllib

        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


class Metrics:
    """All series the server exports, registered in one private registry."""

    def __init__(self, backend_label: str = "asyncio") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.backend_label = backend_label
        registry = self.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        Info(f"{PREFIX}_build", "Versions of this server and its inference libraries.", registry=registry).info(
            build_info()
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_inference_queue_depth",
            "Inference jobs waiting for a worker.",
            ["backend"],
            registry=registry,
        )
        self.active_sessions = Gauge(f"{PREFIX}_active_sessions", "Open recording sessions.", registry=registry)
        self.asr_latency = Histogram(
            f"{PREFIX}_asr_latency_seconds",
            "Time of one ASR call, by kind (partial: a live draft; commit: a careful pass).",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.diarization_latency = Histogram(
            f"{PREFIX}_diarization_latency_seconds",
            "Time to diarise one meeting, by backend.",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.llm_latency = Histogram(
            f"{PREFIX}_llm_latency_seconds",
            "Time of one successful summary, by provider.",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end_latency = Histogram(
            f"{PREFIX}_end_to_end_latency_seconds",
            "Time from the client's stop to the final message.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.jobs_total = Counter(
            f"{PREFIX}_jobs_total", "Inference jobs started, by stage.", ["stage"], registry=registry
        )
        self.job_failures = Counter(
            f"{PREFIX}_job_failures_total", "Inference jobs that failed, by stage.", ["stage"], registry=registry
        )
        self.llm_failures = Counter(
            f"{PREFIX}_llm_failures_total",
            "LLM provider failures, by provider and reason.",
            ["provider", "reason"],
            registry=registry,
        )
        self.hook_failures = Counter(
            f"{PREFIX}_workflow_hook_failures_total",
            "Post-meeting hook failures, by hook.",
            ["hook"],
            registry=registry,
        )
        self.protocol_errors = Counter(
            f"{PREFIX}_protocol_errors_total",
            "Bad client messages, by error code.",
            ["code"],
            registry=registry,
        )
        self.sessions_refused = Counter(
            f"{PREFIX}_sessions_refused_total",
            "Sessions refused before start, by reason.",
            ["reason"],
            registry=registry,
        )
        self.partials_dropped = Counter(
            f"{PREFIX}_partials_dropped_total",
            "Stale partial messages dropped for slow readers.",
            registry=registry,
        )
        self.processing_lag = Histogram(
            f"{PREFIX}_processing_lag_seconds",
            "Audio received but not yet decoded when a partial is sent.",
            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.background_jobs = Gauge(
            f"{PREFIX}_background_jobs",
            "After-stop jobs nobody waits for on a socket (clients that left, uploads), waiting or running.",
            registry=registry,
        )
        self.background_jobs_dropped = Counter(
            f"{PREFIX}_background_jobs_dropped_total",
            "Background jobs not taken because those waiting or running held MAX_BACKGROUND_AUDIO_SECONDS of audio.",
            registry=registry,
        )
        self.stored_meetings = Gauge(
            f"{PREFIX}_stored_meetings",
            "Meetings in the meeting store, by status (read from the store at each scrape).",
            ["status"],
            registry=registry,
        )
        self.asr_model_calls = Counter(
            f"{PREFIX}_asr_model_calls_total",
            "Whisper model calls by path (draft, careful, stop, full, calibration) and op "
            "(encode, generate, fallback, align).",
            ["path", "op"],
            registry=registry,
        )
        self.asr_passes = Counter(
            f"{PREFIX}_asr_passes_total",
            "Recogniser passes by path and purpose (window, opening, tail, cut_context).",
            ["path", "purpose"],
            registry=registry,
        )
        self.asr_full_context_skipped = Counter(
            f"{PREFIX}_asr_full_context_skipped_total",
            "Finals that kept the live text for the rest of the recording: the box was short of CPU at stop.",
            registry=registry,
        )
        self.asr_audio_seconds = Counter(
            f"{PREFIX}_asr_audio_seconds_total", "Seconds of audio decoded, by path.", ["path"], registry=registry
        )
        self.asr_model_seconds = Counter(
            f"{PREFIX}_asr_model_seconds_total", "Seconds spent in model calls, by path.", ["path"], registry=registry
        )
        self.draft_batch_size = Histogram(
            f"{PREFIX}_draft_batch_size",
            "Live drafts decoded together in one model call (several sessions' drafts share a batch).",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16),
            registry=registry,
        )
        self.vad_onset_delay = Histogram(
            f"{PREFIX}_vad_onset_delay_seconds",
            "Audio seconds from an utterance's speech onset to its first draft being decoded.",
            buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
            registry=registry,
        )
        self.uploads = Counter(
            f"{PREFIX}_uploads_total",
            "Uploaded recordings, by result: accepted, rejected_too_big, rejected_not_audio, rejected_bad_request "
            "(when they arrive), then done or failed (when processed).",
            ["result"],
            registry=registry,
        )
        self.session_takeovers = Counter(
            f"{PREFIX}_session_takeovers_total",
            "Meetings a Redis-mode worker took over from a worker that stopped renewing its lease.",
            registry=registry,
        )
        for result in UPLOAD_RESULTS:
            self.uploads.labels(result=result)
        self.spool_bytes = Gauge(
            f"{PREFIX}_spool_bytes",
            "Bytes of sealed audio in the spool directory (DATA_DIR/spool), read at each scrape.",
            registry=registry,
        )
        self.recoveries = Counter(
            f"{PREFIX}_recoveries_total",
            "Meetings found unfinished at start-up, by result: recovered (finished from the spool), failed "
            "(the spool could not be read), audio_lost (no spool: marked failed).",
            ["result"],
            registry=registry,
        )
        for result in RECOVERY_RESULTS:
            self.recoveries.labels(result=result)
        # capacity (services/capacity.py): what admission and the draft thinning see
        self.capacity_sessions = Gauge(
            f"{PREFIX}_capacity_sessions",
            "Live meetings that may still be admitted (measured load and MAX_SESSIONS).",
            registry=registry,
        )
        self.session_cpu_cost = Gauge(
            f"{PREFIX}_session_cpu_cost",
            "CPU seconds one live meeting costs per audio second (measured with drafts thinned, else the prior).",
            registry=registry,
        )
        self.draft_interval = Gauge(
            f"{PREFIX}_draft_interval_seconds",
            "Seconds of new audio between a live session's draft steps (grows under load).",
            registry=registry,
        )
        for reason in ("busy", "capacity", "overloaded"):
            self.sessions_refused.labels(reason=reason)
        self.queue_depth.labels(backend=backend_label).set(0)
        for stage in STAGES:
            self.jobs_total.labels(stage=stage)
            self.job_failures.labels(stage=stage)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
