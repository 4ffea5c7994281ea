"""A real `MeetingPipeline` and `RecordingSession` wired to in-memory fakes, for tests with no network.

The recogniser is `FakeRecognizer` (scripted words by time), the diariser `ScriptedDiarizer`, the
LLM chain a `ScriptedProvider` or the real offline summariser, the hooks `RecordingHook`s. The
orchestrator, the live pump, the VAD (real Silero on real audio) and the session are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from starlette.websockets import WebSocketDisconnect

from integrations.workflows import WorkflowRunner
from observability import Metrics
from services.audio_buffer import AudioCipher
from services.diarization import DiarizationService
from services.diarization_backends.base import SpeakerTurn
from services.diarization_backends.fake import ScriptedDiarizer
from services.errors import WorkflowError
from services.fake_recognizer import FakeRecognizer, words_over
from services.live_policy import LivePolicy
from services.llm_providers.base import LLMProvider
from services.llm_providers.offline import OfflineProvider
from services.llm_service import LLMService, RetryPolicy
from services.meeting_store import MeetingStore
from services.orchestrator import Orchestrator
from services.pipeline import MeetingPipeline
from services.session_builder import SessionBuilder
from services.sql_meeting_store import SqlMeetingStore, sqlite_url
from services.types import MeetingRecord, Word

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def scripted_words(name: str) -> list[Word]:
    """The words of a scripted fixture (`<name>.json`), spread evenly over each turn."""
    turns = json.loads((FIXTURES / f"{name}.json").read_text())["turns"]
    return [word for turn in turns for word in words_over(turn["text"], turn["start"], turn["end"])]


def scripted_turns(name: str) -> list[SpeakerTurn]:
    turns = json.loads((FIXTURES / f"{name}.json").read_text())["turns"]
    return [SpeakerTurn(turn["start"], turn["end"], turn["speaker"]) for turn in turns]


class RecordingHook:
    """A workflow hook that keeps every record it is handed; `error` makes it fail after keeping it."""

    name = "recorder"

    def __init__(self, error: str | None = None) -> None:
        self.records: list[MeetingRecord] = []
        self.arrived = asyncio.Event()
        self._error = error

    async def run(self, record: MeetingRecord) -> None:
        self.records.append(record)
        self.arrived.set()
        if self._error is not None:
            raise WorkflowError(f"{self.name}: {self._error}")

    async def aclose(self) -> None:
        return None


@contextlib.asynccontextmanager
async def fake_pipeline(
    recognizer: FakeRecognizer,
    *,
    diarizer: ScriptedDiarizer | None = None,
    providers: Sequence[LLMProvider] = (),
    hooks: Sequence[RecordingHook] = (),
    policy: LivePolicy | None = None,
    store: MeetingStore | None = None,
    full_context_final: bool = True,
) -> AsyncIterator[tuple[MeetingPipeline, Orchestrator]]:
    """A started pipeline (one job worker, a throw-away SQLite store unless `store`); drained and closed on exit.
    `full_context_final=False`: the live transcriber commits the tail at stop with a careful pass."""
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            store = await stack.enter_async_context(await SqlMeetingStore.open(sqlite_url(folder)))
        async with _pipeline(recognizer, diarizer, providers, hooks, policy, store, full_context_final) as started:
            yield started


@contextlib.asynccontextmanager
async def _pipeline(
    recognizer: FakeRecognizer,
    diarizer: ScriptedDiarizer | None,
    providers: Sequence[LLMProvider],
    hooks: Sequence[RecordingHook],
    policy: LivePolicy | None,
    store: MeetingStore,
    full_context_final: bool,
) -> AsyncIterator[tuple[MeetingPipeline, Orchestrator]]:
    metrics = Metrics()
    orchestrator = Orchestrator(workers=1, batch_size=1, metrics=metrics)
    diarization = None
    if diarizer is not None:
        diarization = DiarizationService(
            orchestrator.run_model, metrics, None, heavy_loader=lambda: diarizer, heavy_name=diarizer.name
        )
    llm = LLMService([*providers, OfflineProvider()], metrics, policy=RetryPolicy(max_attempts=1))
    await orchestrator.start()
    sessions = SessionBuilder(
        metrics=metrics,
        recognizer=recognizer,
        orchestrator=orchestrator,
        diarization=diarization,
        policy=policy or LivePolicy(),
        cipher=AudioCipher(None),
        partial_interval=0.4,
        spools=None,
        draft_batch_size=8,
        full_context_final=full_context_final,
    )
    pipeline = MeetingPipeline(
        metrics=metrics,
        orchestrator=orchestrator,
        diarization=diarization,
        llm=llm,
        workflows=WorkflowRunner(list(hooks), metrics, timeout_seconds=5.0),
        store=store,
        sessions=sessions,
    )
    try:
        yield pipeline, orchestrator
    finally:
        await orchestrator.drain()
        await orchestrator.aclose()


class FakeWebSocket:
    """The part of Starlette's `WebSocket` a session uses, fed by the test instead of a network."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {"type": "websocket", "extensions": {}}
        self.sent: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.peer_gone = False
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def text(self, text: str) -> None:
        self._incoming.put_nowait({"type": "websocket.receive", "text": text})

    def json(self, message: dict[str, Any]) -> None:
        self.text(json.dumps(message))

    def audio(self, data: bytes) -> None:
        self._incoming.put_nowait({"type": "websocket.receive", "bytes": data})

    def disconnect(self) -> None:
        """The peer vanishes: sends fail from now on and the next receive reports it."""
        self.peer_gone = True
        self._incoming.put_nowait({"type": "websocket.disconnect", "code": 1006})

    async def receive(self) -> dict[str, Any]:
        return await self._incoming.get()

    async def send_json(self, message: dict[str, Any]) -> None:
        if self.peer_gone:
            raise WebSocketDisconnect(1006)
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.close_code = code

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [message for message in self.sent if message["type"] == kind]
