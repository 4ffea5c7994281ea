"""Prometheus metrics for the meeting assistant.

Each app instance owns its own `CollectorRegistry`, so building the app twice (as tests do)
never raises a duplicate-registration error. Labels are bounded sets (stage, provider, reason,
hook, backend): never a session id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "meeting_assistant"
UPLOAD_RESULTS = ("accepted", "rejected_too_big", "rejected_not_audio", "rejected_bad_request", "done", "failed")
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """All series the server exports, registered in one private registry."""

    def __init__(self, backend_label: str = "asyncio") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.backend_label = backend_label
        registry = self.registry
        self.queue_depth = Gauge(
            f"{PREFIX}_inference_queue_depth",
            "Inference jobs waiting for a worker.",
            ["backend"],
            registry=registry,
        )
        self.active_sessions = Gauge(f"{PREFIX}_active_sessions", "Open recording sessions.", registry=registry)
        self.asr_latency = Histogram(
            f"{PREFIX}_asr_latency_seconds",
            "Time of one ASR call, by kind (partial, commit, final).",
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
            "Background jobs not taken because MAX_BACKGROUND_JOBS were already waiting or running.",
            registry=registry,
        )
        self.stored_meetings = Gauge(
            f"{PREFIX}_stored_meetings",
            "Meetings in the meeting store, by status (read from the store at each scrape).",
            ["status"],
            registry=registry,
        )
        self.uploads = Counter(
            f"{PREFIX}_uploads_total",
            "Uploaded recordings, by result: accepted, rejected_too_big, rejected_not_audio, rejected_bad_request "
            "(when they arrive), then done or failed (when processed).",
            ["result"],
            registry=registry,
        )
        for result in UPLOAD_RESULTS:
            self.uploads.labels(result=result)
        self.queue_depth.labels(backend=backend_label).set(0)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
