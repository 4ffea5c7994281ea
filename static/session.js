// One recording's conversation with the server over /ws, surviving dropped
// connections and page reloads.
//
// Every captured frame goes into an AudioStore first and is sent when a socket
// is open. If the socket drops before `final`, the session reconnects (jittered
// exponential back-off) and asks the server to resume the same server session
// (`start` with `resume`); the server answers with the seconds of audio it holds
// (`received_seconds`) and replays the transcript, and the audio after that point
// is sent. Only when the server no longer knows the session (`unknown_session`)
// does a new server session start, fed from the end of the last committed
// segment; its times are shifted so the transcript stays continuous.
//
// A session built with `resumeId` re-attaches to a recording this tab started
// before a page reload: its local audio starts where the server's ends.
//
// Events (CustomEvent, data in `detail`):
//   session  {id}              the server session this recording now feeds
//   status   {status, message, lag, sessionId, resumed}
//   segment  {key, epoch, start, end, text, speaker, committed}
//   retract  {epoch}           drop tentative segments of an abandoned server session
//   final    {final, segments, resumedAt}   resumedAt > 0 when the summary
//                                           only covers audio from that time
//   problem  {code, message}   a server error message
//   link     {state: "connecting"|"open"|"lost"|"failed"|"closed", message}
//   fallback {at, message}     the server lost the session: a new one starts at `at` s
//   orphaned {sessionId}       the server finished the recording without us (the
//                              stop had been sent, or it was given up): read it from the store

import { AudioStore } from "./audio-store.js";
import { clock } from "./format.js";

// Backlog (audio captured while disconnected) goes out in 1 s frames, at most
// 50 per half second: far under the server's frame-rate and frame-size limits.
const RESEND_FRAME_S = 1;
const RESEND_BURST = 50;
const RESEND_PAUSE_MS = 500;
const MAX_RETRIES_AFTER_STOP = 8;
const MAX_DELAY_S = 10;
const REFUSED =
  "The server refused the connection. If you were given a link with an access token (…#token=…), open that exact link and try again.";

const FATAL_CLOSE = {
  1008: "The server refused this recording (not authorised). If you were given a link with a token, open that exact link and try again.",
  1009: "The server rejected the audio as too large. Please reload the page and try again.",
};

const isFatalCode = (code) => /auth|token|forbidden|policy|denied/i.test(code || "");
const isBusyCode = (code) => /busy|full|capacity|overload|try.?again/i.test(code || "");

/** base64url without padding: only characters a subprotocol may hold. */
function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Seconds to wait before retry number `n`: exponential, capped, with jitter so clients spread out. */
export function backoff(n, base) {
  const capped = Math.min(MAX_DELAY_S, base * 2 ** n);
  return capped * (0.5 + Math.random() * 0.5);
}

export class MeetingSession extends EventTarget {
  /**
   * @param {object} opts {url, sampleRate, title, language, token, resumeId}
   */
  constructor({ url, sampleRate, title = null, language = null, token = null, resumeId = null }) {
    super();
    this.url = url;
    this.rate = sampleRate;
    this.startMessage = { type: "start", sample_rate: sampleRate, language, title };
    // Browsers cannot set headers on a WebSocket; a subprotocol keeps the token out of URLs
    // (and so out of access logs). The server answers with the plain "meeting-assistant".
    this.protocols = token ? ["meeting-assistant", `meeting-assistant.token.${base64url(token)}`] : undefined;
    this.audio = new AudioStore(sampleRate);
    this.sessionId = resumeId;
    this.attaching = !!resumeId; // local audio's place on the server's timeline comes with `resumed`
    // One timeline per server session: local sample `audioBase` is its sample 0, and its times
    // are shown `timeBase` seconds later. A resumed session keeps its timeline.
    this.timeline = { index: 0, audioBase: 0, timeBase: 0, committedEnd: 0 };
    this.conn = null;
    this.committed = []; // committed segments of every timeline so far
    this.stopRequested = false;
    this.stopSentEver = false;
    this.finished = false;
    this.failed = false;
    this.retries = 0;
    this.busy = false;
    this.retryTimer = null;
    this.handshakeFailures = 0;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Seconds of the meeting so far (on the timeline the transcript shows). */
  get seconds() {
    const t = this.timeline;
    return Math.max(0, (this.audio.total - t.audioBase) / this.rate + t.timeBase);
  }

  /** Open the first connection. */
  start() {
    this.open();
  }

  /** Keep a captured frame and send it if connected. */
  send(pcm) {
    if (this.finished || this.failed) return;
    const c = this.conn;
    const caughtUp = c && c.ready && c.sentTo === this.audio.total && !c.pumpTimer;
    this.audio.push(pcm);
    if (caughtUp && c.ws.readyState === WebSocket.OPEN && !c.stopSent) {
      c.ws.send(pcm);
      c.sentTo += pcm.length;
    }
  }

  /** The recording is over: ask the server to finish. Safe to call twice. */
  stop() {
    if (this.stopRequested) return;
    this.stopRequested = true;
    const c = this.conn;
    if (c && c.ws.readyState === WebSocket.OPEN) {
      if (c.ready && !c.pumpTimer) this.pump(c); // sends stop once all audio is out
    } else if (this.retryTimer) {
      // Waiting to reconnect: try now rather than after the back-off.
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.open();
    }
  }

  /** Drop everything without waiting for a result. */
  abandon() {
    this.finished = true;
    clearTimeout(this.retryTimer);
    if (this.conn) this.conn.ws.close(1000);
  }

  /** Send the audio this connection has not had yet (captured while connecting or disconnected). */
  pump(c) {
    c.pumpTimer = null;
    if (c !== this.conn || !c.ready || c.ws.readyState !== WebSocket.OPEN || c.stopSent) return;
    let budget = RESEND_BURST;
    for (const pcm of this.audio.framesFrom(c.sentTo, this.rate * RESEND_FRAME_S)) {
      if (budget-- <= 0) break;
      c.ws.send(pcm);
      c.sentTo += pcm.length;
    }
    if (c.sentTo < this.audio.total) c.pumpTimer = setTimeout(() => this.pump(c), RESEND_PAUSE_MS);
    else if (this.stopRequested) this.sendStop(c);
  }

  sendStop(c) {
    c.stopSent = true;
    this.stopSentEver = true;
    c.ws.send(JSON.stringify({ type: "stop" }));
  }

  open() {
    const ws = new WebSocket(this.url, this.protocols);
    ws.binaryType = "arraybuffer";
    // `ready`: the server session is settled (fresh, or resumed) and audio may flow.
    const c = { ws, ready: false, resuming: false, sentTo: 0, opened: false, stopSent: false, heard: false, pumpTimer: null };
    this.conn = c;
    this.busy = false;
    this.emit("link", { state: "connecting", message: "" });
    ws.onopen = () => {
      c.opened = true;
      this.handshakeFailures = 0;
      if (this.sessionId) {
        c.resuming = true;
        // re-attaching after a reload: the audio this page sends is a new capture, not the rest of the old one
        const fresh = this.attaching ? { new_capture: true } : {};
        ws.send(JSON.stringify({ ...this.startMessage, resume: this.sessionId, ...fresh }));
      } else {
        this.startFresh(c);
      }
    };
    ws.onmessage = (e) => this.receive(c, e.data);
    ws.onclose = (e) => this.closed(c, e);
  }

  /** A new server session on `c`, fed from the start of the current timeline. */
  startFresh(c) {
    c.resuming = false;
    c.ready = true;
    c.sentTo = Math.max(this.audio.first, this.timeline.audioBase);
    c.ws.send(JSON.stringify(this.startMessage));
    if (c.socketId) this.adopt(c.socketId);
    this.emit("link", { state: "open", message: "" });
    this.pump(c);
  }

  adopt(id) {
    if (id && id !== this.sessionId) {
      this.sessionId = id;
      this.emit("session", { id });
    }
  }

  /** The server holds `receivedSeconds` of this session: send what follows. */
  resumed(c, receivedSeconds) {
    const received = Math.round(receivedSeconds * this.rate);
    if (this.attaching) {
      this.timeline.audioBase = this.audio.total - received;
      this.attaching = false;
    }
    c.resuming = false;
    c.ready = true;
    c.sentTo = Math.min(this.audio.total, Math.max(this.audio.first, this.timeline.audioBase + received));
    this.emit("link", { state: "open", message: "", resumed: true });
    this.pump(c);
  }

  /** The server does not know the session any more. */
  unknownSession(c) {
    if (this.stopSentEver || this.attaching) {
      // It was finished without us (stop had reached it, or nobody came back in time): it is stored.
      this.finished = true;
      this.emit("orphaned", { sessionId: this.sessionId });
      c.ws.close(1000);
      return;
    }
    const old = this.timeline;
    const end = old.audioBase + Math.floor(old.committedEnd * this.rate);
    const from = Math.min(this.audio.total, Math.max(this.audio.first, end));
    this.emit("retract", { epoch: old.index });
    this.timeline = { index: old.index + 1, audioBase: from, timeBase: old.timeBase + (from - old.audioBase) / this.rate, committedEnd: 0 };
    this.sessionId = null;
    this.emit("fallback", {
      at: this.timeline.timeBase,
      message: `The server no longer had this recording, so a new session continues it from ${clock(this.timeline.timeBase)}.`,
    });
    this.startFresh(c); // the socket stays open for a plain start
  }

  receive(c, data) {
    if (typeof data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!c.heard) {
      c.heard = true;
      this.retries = 0;
    }
    const t = this.timeline;
    switch (msg.type) {
      case "status":
        if (!c.socketId) c.socketId = msg.session_id; // the id this socket would have on its own
        if (msg.resumed && c.resuming) {
          this.adopt(msg.session_id);
          this.resumed(c, Number(msg.received_seconds) || 0);
        } else if (c.resuming) {
          break; // the socket's own greeting, before the server read our resume
        } else if (c.ready) {
          this.adopt(msg.session_id);
        }
        this.emit("status", { status: msg.status, message: msg.message || "", lag: msg.lag, sessionId: msg.session_id, resumed: !!msg.resumed });
        break;
      case "partial_transcript": {
        const seg = {
          key: `${t.index}:${msg.segment_id}`,
          epoch: t.index,
          start: (msg.start || 0) + t.timeBase,
          end: (msg.end || msg.start || 0) + t.timeBase,
          text: msg.text || "",
          speaker: msg.speaker ?? null,
          committed: !!msg.committed,
        };
        if (seg.committed) {
          t.committedEnd = Math.max(t.committedEnd, msg.end || 0);
          this.committed = this.committed.filter((s) => s.key !== seg.key).concat([seg]);
          // Everything since the start is kept (a resume may ask for any of it); only audio
          // older than the store's limit that is committed may go.
          this.audio.trim(t.audioBase + Math.floor(t.committedEnd * this.rate));
        }
        this.emit("segment", seg);
        break;
      }
      case "final": {
        this.finished = true;
        const earlier = this.committed.filter((s) => s.epoch < t.index);
        const own = (msg.segments || []).map((s, i) => ({
          key: `${t.index}:final:${i}`,
          epoch: t.index,
          start: (s.start || 0) + t.timeBase,
          end: (s.end || s.start || 0) + t.timeBase,
          text: s.text || "",
          speaker: s.speaker ?? null,
          committed: true,
        }));
        this.emit("final", { final: msg, segments: earlier.concat(own), resumedAt: t.timeBase });
        break;
      }
      case "error":
        if (msg.code === "unknown_session" && c.resuming) return this.unknownSession(c);
        if (isFatalCode(msg.code)) c.fatal = msg.message || msg.code;
        if (isBusyCode(msg.code)) this.busy = true;
        this.emit("problem", { code: msg.code || "", message: msg.message || msg.code || "The server reported an error." });
        break;
      default:
        break;
    }
  }

  async closed(c, e) {
    clearTimeout(c.pumpTimer);
    c.pumpTimer = null;
    if (c !== this.conn) return;
    if (this.finished) {
      this.emit("link", { state: "closed", message: "" });
      return;
    }
    const fatal = FATAL_CLOSE[e.code] || c.fatal;
    if (fatal) return this.fail(fatal);
    // A refused upgrade (bad token) reaches the browser as a failed handshake, just like a
    // server that is down; if the server answers HTTP, it was a refusal.
    if (!c.opened && ++this.handshakeFailures >= 2 && (await this.serverAnswers())) return this.fail(REFUSED);
    if (c !== this.conn || this.finished || this.failed) return;
    if (this.stopRequested && this.retries >= MAX_RETRIES_AFTER_STOP) {
      return this.fail(
        "The server could not be reached to finish this recording. Your audio is kept: download it below, or try again later.",
      );
    }
    const busy = this.busy || e.code === 1013;
    const delay = backoff(this.retries, busy ? 3 : 0.5);
    this.retries += 1;
    const why =
      e.code === 1012
        ? "The server is restarting."
        : busy
          ? "The server is busy."
          : "The connection to the server was lost.";
    const keeping = this.stopRequested ? "Your audio is kept" : "Recording continues and your audio is kept";
    this.emit("link", {
      state: "lost",
      message: `${why} ${keeping}; reconnecting in ${Math.ceil(delay)} s…`,
      retryIn: delay,
    });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.open();
    }, delay * 1000);
  }

  async serverAnswers() {
    try {
      const url = new URL(this.url);
      url.protocol = url.protocol === "wss:" ? "https:" : "http:";
      url.pathname = "/health";
      url.search = "";
      const res = await fetch(url, { cache: "no-store" });
      return res.status < 500;
    } catch {
      return false;
    }
  }

  fail(message) {
    this.failed = true;
    clearTimeout(this.retryTimer);
    this.emit("link", { state: "failed", message });
  }
}
