"""`ORCHESTRATOR_BACKEND=redis`: gateways and inference workers sharing one Redis.

A gateway (`uvicorn app:app`) keeps the WebSockets, the page and the API; an inference worker
(`python -m worker`) runs the live transcription and the after-stop job of the meetings it
takes. They meet in Redis Streams (names in `streams.py`):

    gateway                                   Redis                         worker
    first audio ──XADD──▶ jobs  ─────────── group "workers" ──XREADGROUP──▶ takes the session
    each chunk (Fernet-sealed) ──XADD──▶ audio:{id} ───────────XREAD──────▶ buffer + live pump
    stop ──XADD stop marker──▶ audio:{id}                                  after-stop pipeline
    WebSocket ◀── partials, notices, final ◀──XREAD── results:{id} ◀──XADD── (epoch-stamped)
                                                     lease:{id} ◀── renewed while it holds it

A session's live state lives on one worker at a time, the holder of `lease:{id}` (a key with a
TTL of `WORKER_LEASE_SECONDS`, renewed a few times per TTL; the renewal also resets the job's
idle time in the group). A worker that dies stops renewing; another worker's `XAUTOCLAIM` takes
the job once it has been idle a lease long, takes the lease, bumps `epoch:{id}`, rebuilds the
session's audio from the stored stream and carries the committed transcript over from the
results stream (`takeover.py`): only the audio after the last committed word is transcribed
again. The gateway drops results of an older epoch, so participants see a short pause and then
the transcript carrying on. When the final is published the job is acknowledged and deleted and
the session's streams removed: nothing stays pending.

Admission (`fleet.py`, `reservations.py`): every worker publishes its load meter's headroom each
second (`load:{worker}`, a TTL of 3 s); a gateway admits a new meeting only when a Lua script finds
a slot the live workers have and no other admitted meeting has reserved, and reserves it (one step,
atomic across gateways); the worker that takes the meeting drops the reservation with the report
that counts it. A worker without room leaves new jobs to those with some.

A worker whose process died is known by its missing Redis connections (`liveness.py`) and its
meetings are taken over at once; the lease covers workers that froze or vanished with their
machine. A client whose socket dropped may resume on any gateway: the recording's relay moves
there (`resumes.py`).

Modules: `streams.py` (names, connection, group), `relay.py` and `relay_buffer.py` (the gateway's
side of a session), `gateway.py` (`RemotePipeline`, what the gateway's sessions and uploads talk
to), `resumes.py` (resuming through any gateway), `lease.py`, `liveness.py` (workers that are gone),
`worker_session.py` (one session on a worker), `consumer.py` (taking and handing back jobs),
`takeover.py` (what a takeover keeps), `fleet.py` (the workers' headroom), `reservations.py`
(admission across gateways).
"""
