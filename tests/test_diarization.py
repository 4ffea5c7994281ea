"""Diarisation on real audio with the real CAM++ encoder (loaded once for the module).

The recordings are the espeak-ng fixtures and the AMI far-field excerpts in tests/fixtures (see
their README; AMI is CC BY 4.0). The pyannote and NeMo fallbacks are exercised for real: neither
package is part of the default install.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import logging
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from observability import Metrics
from services.audio_buffer import AudioCipher, SecureAudioBuffer
from services.diarization import DiarizationService, build_diarization_service
from services.diarization_backends import embedded
from services.diarization_backends.alignment import assign_speakers
from services.diarization_backends.base import SpeakerTurn
from services.errors import AudioDecryptionError
from services.orchestrator import ModelRunner, Orchestrator
from services.session_speakers import CATCH_UP_SECONDS, FEED_SECONDS
from services.settings import Settings, load_settings
from services.types import SAMPLE_RATE, Segment, Word

FIXTURES = Path(__file__).parent / "fixtures"


def _settings(**overrides: object) -> Settings:
    base: dict[str, object] = {"_env_file": None, "diarization_backend": "embedded", "hf_token": None}
    return load_settings(**{**base, **overrides})


def _audio(name: str) -> np.ndarray:
    with wave.open(str(FIXTURES / f"{name}.wav")) as handle:
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def _turns(name: str) -> list[dict[str, object]]:
    return json.loads((FIXTURES / f"{name}.json").read_text())["turns"]


def _words(text: str, start: float, end: float) -> list[Word]:
    tokens = text.split()
    step = (end - start) / len(tokens)
    return [Word(start + i * step, start + (i + 1) * step, f" {token}") for i, token in enumerate(tokens)]


def _segments(name: str) -> list[Segment]:
    """One ASR-like segment per scripted turn, words spread evenly over the turn."""
    return [
        Segment(t["start"], t["end"], t["text"], words=_words(t["text"], t["start"], t["end"]))
        for t in _turns(name)  # type: ignore[arg-type]
    ]


@pytest.fixture(scope="module")
def run_model() -> Iterator[ModelRunner]:
    """The orchestrator's door to the inference executor (its job workers are not needed here)."""
    orchestrator = Orchestrator(workers=1, batch_size=1, metrics=Metrics())
    yield orchestrator.run_model
    asyncio.run(orchestrator.aclose())


@pytest.fixture(scope="module")
def service(run_model: ModelRunner) -> DiarizationService:
    return build_diarization_service(_settings(), run_model, Metrics())


async def test_two_voices_give_two_speakers_and_the_right_turns(service: DiarizationService) -> None:
    labelled = await service.label_segments(_audio("meeting_two_voices"), _segments("meeting_two_voices"))
    assert service.name == "embedded"
    assert [s.speaker for s in labelled] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
    assert [s.text for s in labelled] == [t["text"] for t in _turns("meeting_two_voices")]


async def test_three_voices_give_three_speakers(service: DiarizationService) -> None:
    labelled = await service.label_segments(_audio("meeting_three_voices"), _segments("meeting_three_voices"))
    assert [s.speaker for s in labelled] == [f"SPEAKER_{n}" for n in (1, 2, 3, 1, 2, 3)]


async def test_one_voice_gives_one_speaker(service: DiarizationService) -> None:
    labelled = await service.label_segments(_audio("one_voice"), _segments("one_voice"))
    assert {s.speaker for s in labelled} == {"SPEAKER_1"}


async def test_segment_spanning_a_change_is_split_at_the_words(service: DiarizationService) -> None:
    first, second = _segments("meeting_two_voices")[:2]
    merged = Segment(first.start, second.end, f"{first.text} {second.text}", words=first.words + second.words)
    labelled = await service.label_segments(_audio("meeting_two_voices"), [merged])
    assert [(s.speaker, s.text) for s in labelled] == [("SPEAKER_1", first.text), ("SPEAKER_2", second.text)]
    assert labelled[0].start == merged.start and labelled[1].end == merged.end
    assert labelled[0].end <= labelled[1].start


async def test_segment_without_words_takes_the_majority_speaker(service: DiarizationService) -> None:
    turns = _turns("meeting_two_voices")
    # mostly Bob's turn (index 1), with the tail of Alice's first turn
    segment = Segment(float(turns[0]["end"]) - 1.0, float(turns[1]["end"]), "mixed")  # type: ignore[arg-type]
    opening = Segment(float(turns[0]["start"]), float(turns[0]["end"]), "alice")  # type: ignore[arg-type]
    labelled = await service.label_segments(_audio("meeting_two_voices"), [opening, segment])
    assert [s.speaker for s in labelled] == ["SPEAKER_1", "SPEAKER_2"]


@pytest.mark.parametrize("seconds", [0.0, 0.05, 0.3, 3.0])
async def test_silence_and_very_short_audio_give_no_speakers(service: DiarizationService, seconds: float) -> None:
    audio = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
    labelled = await service.label_segments(audio, [Segment(0.0, max(seconds, 0.1), "hm")])
    assert [s.speaker for s in labelled] == [None]
    assert await service.label_segments(audio, []) == []


async def test_min_max_hint_is_honoured(run_model: ModelRunner) -> None:
    capped = build_diarization_service(_settings(diarization_max_speakers=1), run_model, Metrics())
    labelled = await capped.label_segments(_audio("meeting_two_voices"), _segments("meeting_two_voices"))
    assert {s.speaker for s in labelled} == {"SPEAKER_1"}


async def test_latency_is_recorded_by_backend(run_model: ModelRunner) -> None:
    metrics = Metrics()
    timed = build_diarization_service(_settings(), run_model, metrics)
    await timed.label_segments(_audio("one_voice"), _segments("one_voice"))
    count = metrics.registry.get_sample_value(
        "meeting_assistant_diarization_latency_seconds_count", {"backend": "embedded"}
    )
    assert count == 1.0


async def test_live_tracker_labels_committed_segments_consistently(service: DiarizationService) -> None:
    audio = _audio("meeting_two_voices")
    tracker = service.session_speakers("live-labels")
    labels = []
    for turn in _turns("meeting_two_voices"):
        start, end = float(turn["start"]), float(turn["end"])  # type: ignore[arg-type]
        labels.append(await tracker.label(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)], start, end))
    assert labels == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
    assert await tracker.label(np.zeros(SAMPLE_RATE // 10, dtype=np.float32), 0.0, 0.1) is None
    assert await tracker.label(np.zeros(2 * SAMPLE_RATE, dtype=np.float32), 0.0, 2.0) is None


async def test_speakers_are_embedded_while_recording_and_match_the_whole_recording(
    service: DiarizationService,
) -> None:
    """Audio arrives in 0.4 s frames; at stop only the last turn is left to embed."""
    audio = _audio("meeting_three_voices")
    pcm = (audio * 32767).astype(np.int16)
    buffer = SecureAudioBuffer(AudioCipher(None))
    speakers = service.session_speakers("streaming")
    frame = int(0.4 * SAMPLE_RATE)
    for offset in range(0, len(pcm), frame):
        buffer.append(pcm[offset : offset + frame])
        if (embedding := speakers.catch_up(buffer)) is not None:
            await embedding  # a real session records on meanwhile; waiting keeps the test deterministic
    settled = speakers.settled_seconds
    assert settled is not None and settled >= len(pcm) / SAMPLE_RATE - CATCH_UP_SECONDS - 3.5
    turns = await speakers.turns(buffer)
    whole = await service.speaker_turns(buffer.read())
    assert [t.speaker for t in turns] == [t.speaker for t in whole]
    assert all(abs(a.start - b.start) < 0.3 and abs(a.end - b.end) < 0.3 for a, b in zip(turns, whole, strict=True))
    labelled = service.apply_turns(_segments("meeting_three_voices"), turns)
    assert [s.speaker for s in labelled] == [f"SPEAKER_{n}" for n in (1, 2, 3, 1, 2, 3)]


class _ReadCountingBuffer(SecureAudioBuffer):
    """A buffer that notes the length of every read (in seconds)."""

    def __init__(self) -> None:
        super().__init__(AudioCipher(None))
        self.reads: list[float] = []

    def read(self, start: int = 0, end: int | None = None) -> np.ndarray:
        audio = super().read(start, end)
        self.reads.append(len(audio) / SAMPLE_RATE)
        return audio


async def test_a_takeover_embeds_the_meeting_so_far_in_pieces(service: DiarizationService) -> None:
    """A worker taking a meeting over (Redis mode) gets its 80 s so far at once: embedded in pieces of
    at most FEED_SECONDS (one call would hold an inference thread), with the turns of one pass."""
    names = ("meeting_two_voices", "meeting_three_voices", "meeting_four_voices")
    pcm = (np.concatenate([_audio(name) for name in names]) * 32767).astype(np.int16)
    buffer = _ReadCountingBuffer()
    buffer.append(pcm)
    speakers = service.session_speakers("taken-over")
    embedding = speakers.catch_up(buffer)
    assert embedding is not None
    await embedding
    assert len(buffer.reads) >= 3 and max(buffer.reads) <= FEED_SECONDS, buffer.reads
    turns = await speakers.turns(buffer)
    whole = await service.speaker_turns(buffer.read())
    assert [t.speaker for t in turns] == [t.speaker for t in whole]


class _FailsOnceBuffer(SecureAudioBuffer):
    """A buffer whose first read fails, as a corrupted chunk would (fault injection)."""

    failed = False

    def read(self, start: int = 0, end: int | None = None) -> np.ndarray:
        if not self.failed:
            self.failed = True
            raise AudioDecryptionError("Audio decryption failed: injected")
        return super().read(start, end)


async def test_a_failure_while_recording_leaves_the_whole_recording_to_stop(
    service: DiarizationService, caplog: pytest.LogCaptureFixture
) -> None:
    pcm = (_audio("meeting_two_voices") * 32767).astype(np.int16)
    buffer = _FailsOnceBuffer(AudioCipher(None))
    speakers = service.session_speakers("flaky")
    buffer.append(pcm[: 6 * SAMPLE_RATE])
    embedding = speakers.catch_up(buffer)
    assert embedding is not None
    await embedding
    assert speakers.settled_seconds is None, "nothing is embedded early any more"
    assert any("flaky" in r.getMessage() and "diarised at stop" in r.getMessage() for r in caplog.records)
    buffer.append(pcm[6 * SAMPLE_RATE :])
    labelled = service.apply_turns(_segments("meeting_two_voices"), await speakers.turns(buffer))
    assert [s.speaker for s in labelled] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]


async def test_silence_while_recording_gives_no_turns(service: DiarizationService) -> None:
    buffer = SecureAudioBuffer(AudioCipher(None))
    speakers = service.session_speakers("silent")
    for _ in range(40):
        buffer.append(np.zeros(int(0.4 * SAMPLE_RATE), dtype=np.int16))
        speakers.catch_up(buffer)
    assert await speakers.turns(buffer) == []


@pytest.mark.skipif(importlib.util.find_spec("pyannote.audio") is not None, reason="pyannote.audio is installed")
@pytest.mark.parametrize(
    ("token", "reason"), [(None, "HF_TOKEN is unset"), ("hf_dummy", "pyannote.audio is not installed")]
)
async def test_missing_pyannote_falls_back_to_embedded_with_one_warning(
    run_model: ModelRunner, caplog: pytest.LogCaptureFixture, token: str | None, reason: str
) -> None:
    caplog.set_level(logging.WARNING, logger="services.diarization")
    settings = _settings(diarization_backend="pyannote", hf_token=token)
    fallback = build_diarization_service(settings, run_model, Metrics())
    assert fallback.name == "embedded"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Speaker labels" in warnings[0].getMessage() and reason in warnings[0].getMessage()
    labelled = await fallback.label_segments(_audio("one_voice"), _segments("one_voice"))
    assert {s.speaker for s in labelled} == {"SPEAKER_1"}


@pytest.mark.skipif(importlib.util.find_spec("nemo") is not None, reason="NeMo is installed")
def test_nemo_toggle_without_nemo_falls_back(run_model: ModelRunner, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="services.diarization")
    fallback = build_diarization_service(
        _settings(diarization_backend="auto", nemo_diarization_enabled=True), run_model, Metrics()
    )
    assert fallback.name == "embedded"
    assert any("NeMo is not installed" in r.getMessage() for r in caplog.records)


async def test_backend_none_leaves_segments_unlabelled(run_model: ModelRunner) -> None:
    off = build_diarization_service(_settings(diarization_backend="none"), run_model, Metrics())
    labelled = await off.label_segments(_audio("one_voice"), _segments("one_voice"))
    assert off.name == "none" and {s.speaker for s in labelled} == {None}
    assert await off.session_speakers("off").label(_audio("one_voice"), 0.0, 1.0) is None
    await off.aclose()


def test_assign_speakers_names_in_order_of_first_appearance_and_folds_stray_words() -> None:
    turns = [
        SpeakerTurn(0.0, 2.0, "B"),
        SpeakerTurn(2.0, 2.2, "A"),
        SpeakerTurn(2.2, 4.0, "B"),
        SpeakerTurn(4.0, 6.0, "A"),
    ]
    words = [Word(0.2 * i, 0.2 * i + 0.2, f" w{i}") for i in range(30)]
    labelled = assign_speakers([Segment(0.0, 6.0, "all", words=words)], turns)
    assert [(s.speaker, round(s.start, 1), round(s.end, 1)) for s in labelled] == [
        ("SPEAKER_1", 0.0, 4.0),
        ("SPEAKER_2", 4.0, 6.0),
    ]
    assert labelled[0].text == "".join(w.text for w in words[:20]).strip()
    assert assign_speakers([Segment(0.0, 1.0, "x")], []) == [Segment(0.0, 1.0, "x", None, [])]


async def _as_recorded(service: DiarizationService, audio: np.ndarray, name: str) -> list[SpeakerTurn]:
    """Turns on the server's path: 0.4 s frames, embedded every CATCH_UP_SECONDS, clustered at stop."""
    pcm = (audio * 32767).astype(np.int16)
    buffer = SecureAudioBuffer(AudioCipher(None))
    speakers = service.session_speakers(name)
    frame = int(0.4 * SAMPLE_RATE)
    for offset in range(0, len(pcm), frame):
        buffer.append(pcm[offset : offset + frame])
        if (embedding := speakers.catch_up(buffer)) is not None:
            await embedding
    return await speakers.turns(buffer)


async def test_one_far_field_talker_stays_one_speaker(service: DiarizationService) -> None:
    """Regression (issue 9): AMI dev00's first 12 s are one talker (MEE009 from 1.44 s in the corpus
    reference); the silhouette-picked count split him into two speakers on both paths."""
    audio = _audio("ami_dev00_12s")
    recorded = await _as_recorded(service, audio, "one-far-field-talker")
    whole = await service.speaker_turns(audio)
    assert recorded and whole
    assert {t.speaker for t in recorded} == {t.speaker for t in whole} == {recorded[0].speaker}


async def test_four_voices_with_two_alike_give_four_speakers(service: DiarizationService) -> None:
    """Regression (issue 9): en-us+f3 and en-us+f5 are as alike as one voice's own windows, and
    the silhouette-picked count merged them in one call (3 speakers). Both paths now give the
    four scripted speakers, turn by turn, though carol speaks one sentence (two or three windows)."""
    audio = _audio("meeting_four_voices")
    expected = [f"SPEAKER_{n}" for n in (1, 2, 3, 4, 2, 1, 4)]
    for turns in (await _as_recorded(service, audio, "four-voices"), await service.speaker_turns(audio)):
        labelled = service.apply_turns(_segments("meeting_four_voices"), turns)
        assert [s.speaker for s in labelled] == expected


def _reference(uri: str) -> list[SpeakerTurn]:
    """The AMI corpus turns of one committed excerpt (tests/fixtures/ami_dev00_trn04.rttm)."""
    lines = (FIXTURES / "ami_dev00_trn04.rttm").read_text().splitlines()
    fields = [line.split() for line in lines if line.split()[1] == uri]
    return [SpeakerTurn(float(f[3]), float(f[3]) + float(f[4]), f[7]) for f in fields]


def _agreement(turns: list[SpeakerTurn], reference: list[SpeakerTurn], seconds: float) -> float:
    """Share of the single-talker reference speech (10 ms frames) given the right speaker, under the
    best one-to-one mapping of found speakers to reference ones; missed speech counts as wrong."""

    def frames(spans: list[SpeakerTurn], names: list[str]) -> np.ndarray:
        active = np.zeros((len(names), int(seconds * 100)), dtype=bool)
        for turn in spans:
            active[names.index(turn.speaker), int(turn.start * 100) : int(turn.end * 100)] = True
        return active

    ref_names, hyp_names = sorted({t.speaker for t in reference}), sorted({t.speaker for t in turns})
    ref, hyp = frames(reference, ref_names), frames(turns, hyp_names)
    single = ref.sum(axis=0) == 1
    counts = np.array([[np.sum(r & h & single) for h in hyp] for r in ref])
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / single.sum())


async def test_three_far_field_talkers_give_three_speakers(service: DiarizationService) -> None:
    """Regression (issue 9): on AMI trn04 (30 s, far field, three talkers) the diariser's VAD cut the
    quiet ends of words (60 ms padding), so turns came out short and windows were cut mid-word: 2
    speakers on the source file, 3 on this 16-bit copy, agreeing with the corpus turns on 0.80 of
    the single-talker speech. With 400 ms: 3 speakers, 0.87."""
    turns = await _as_recorded(service, _audio("ami_trn04"), "ami-trn04")
    assert len({t.speaker for t in turns}) == 3
    assert _agreement(turns, _reference("trn04"), 30.0) >= 0.85


@pytest.mark.parametrize("pad_ms", [350, 400, 450])
async def test_two_far_field_talkers_stay_two_whatever_the_padding(
    service: DiarizationService, monkeypatch: pytest.MonkeyPatch, pad_ms: int
) -> None:
    """Regression (issue 9): on AMI dev00 (two talkers) a deep cut of the tree, where most windows
    were strays, let two small tight parts of one talker pass as speakers: 3-5 speakers at 350 and
    450 ms of VAD padding. A cut must now keep three quarters of the windows in its speakers."""
    options = embedded.VAD_OPTIONS
    monkeypatch.setattr(embedded, "VAD_OPTIONS", dataclasses.replace(options, speech_pad_ms=pad_ms))
    turns = await _as_recorded(service, _audio("ami_dev00"), f"ami-dev00-{pad_ms}")
    assert len({t.speaker for t in turns}) == 2
    assert _agreement(turns, _reference("dev00"), 30.0) >= 0.8


async def test_one_far_field_talker_from_two_excerpts_stays_one_speaker(service: DiarizationService) -> None:
    """Issue 9 (one voice gives one speaker): MEE009 alone at three moments of the AMI meeting
    (dev00 1.44-13.15 s and 18.4-20.56 s, dev01 7-11.8 s, where the corpus turns have nobody else),
    about 19 s of one far-field talker with pauses between, stays one speaker on the server's path."""
    dev00, dev01 = _audio("ami_dev00"), _audio("ami_dev01_7s_12s")
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)

    def cut(start: float, end: float) -> np.ndarray:
        return dev00[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]

    audio = np.concatenate([cut(1.44, 13.15), pause, dev01, pause, cut(18.4, 20.56)])
    turns = await _as_recorded(service, audio, "one-talker-two-excerpts")
    assert sum(t.end - t.start for t in turns) >= 15.0
    assert len({t.speaker for t in turns}) == 1


@pytest.mark.parametrize(("name", "talkers"), [("ami_dev00", 2), ("ami_trn04", 3)])
@pytest.mark.parametrize(("shift", "gain"), [(0.5, 1.0), (0.0, 0.5), (0.0, 2.0)])
async def test_far_field_count_holds_when_the_recording_is_reframed(
    service: DiarizationService, name: str, talkers: int, shift: float, gain: float
) -> None:
    """Issue 9 (count within ±1): the same far-field recording starting half a second later, or half
    or twice as loud, moves every window and VAD decision; the count found must stay within one of
    the corpus count. It moved by one on AMI dev01 and trn04 in the benchmark (`--perturb`), never
    by two; a count that moves by more with the framing is not to be trusted on other rooms."""
    audio = np.clip(_audio(name)[int(shift * SAMPLE_RATE) :] * gain, -1.0, 1.0)
    turns = await _as_recorded(service, audio, f"{name}-{shift}-{gain}")
    assert abs(len({t.speaker for t in turns}) - talkers) <= 1
