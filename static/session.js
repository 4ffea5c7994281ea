// One recording's conversation with the server over /ws, surviving dropped
// connections.
//
// Every captured frame goes into an AudioStore first and is sent when a socket
// is open. If the socket drops before `final`, the session reconnects (a new
// server session), resends the audio from the end of the last committed segment
// and carries on; times and segment keys of the new connection are shifted so
// the transcript stays continuous. After `stop` it keeps trying for a while,
// then gives up and leaves the audio for download.
//
// Events (CustomEvent, data in `detail`):
//   status   {status, message, lag, sessionId}
//   segment  {key, start, end, text, speaker, committed}
//   retract  {epoch}           drop tentative segments of a lost connection
//   final    {final, segments, resumedAt}   resumedAt > 0 when the summary
//                                           only covers audio from that time
//   problem  {code, message}   a server error message
//   link     {state: "connecting"|"open"|"lost"|"failed"|"closed", message}

import { AudioStore } from "./audio-store.js";

// Backlog (audio captured while disconnected) goes out in 1 s frames, at most
// 50 per half second: far under the server's frame-rate and frame-size limits.
const RESEND_FRAME_S = 1;
const RESEND_BURST = 50;
const RESEND_PAUSE_MS = 500;
const MAX_RETRIES_AFTER_STOP = 8;
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

export class MeetingSession extends EventTarget {
  /**
   * @param {object} opts {url, sampleRate, title, language, token}
   */
  constructor({ url, sampleRate, title = null, language = null, token = null }) {
    super();
    this.url = url;
    this.rate = sampleRate;
    this.startMessage = { type: "start", sample_rate: sampleRate, language, title };
    // Browsers cannot set headers on a WebSocket; a subprotocol keeps the token out of URLs
    // (and so out of access logs). The server answers with the plain "meeting-assistant".
    this.protocols = token ? ["meeting-assistant", `meeting-assistant.token.${base64url(token)}`] : undefined;
    this.audio = new AudioStore(sampleRate);
    this.conn = null;
    this.epoch = 0;
    this.committed = []; // committed segments of every connection so far
    this.stopRequested = false;
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

  /** Open the first connection. */
  start() {
    this.open(0);
  }

  /** Keep a captured frame and send it if connected. */
  send(pcm) {
    if (this.finished || this.failed) return;
    const c = this.conn;
    const caughtUp = c && c.sentTo === this.audio.total && !c.pumpTimer;
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
      if (!c.pumpTimer) this.pump(c); // sends stop once all audio is out
    } else if (this.retryTimer) {
      // Waiting to reconnect: try now rather than after the back-off.
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.open(this.resumeFrom(c));
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
    if (c !== this.conn || c.ws.readyState !== WebSocket.OPEN || c.stopSent) return;
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
    c.ws.send(JSON.stringify({ type: "stop" }));
  }

  open(baseSample) {
    const ws = new WebSocket(this.url, this.protocols);
    ws.binaryType = "arraybuffer";
    const c = {
      ws,
      epoch: this.epoch++,
      base: baseSample, // first sample of this connection's audio
      sentTo: baseSample, // next sample to send
      committedEnd: 0, // seconds, in this connection's timeline
      opened: false,
      stopSent: false,
      heard: false,
      pumpTimer: null,
    };
    this.conn = c;
    this.busy = false;
    this.emit("link", { state: "connecting", message: "" });
    ws.onopen = () => {
      c.opened = true;
      this.handshakeFailures = 0;
      ws.send(JSON.stringify(this.startMessage));
      this.emit("link", { state: "open", message: "" });
      this.pump(c);
    };
    ws.onmessage = (e) => this.receive(c, e.data);
    ws.onclose = (e) => this.closed(c, e);
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
    const offset = c.base / this.rate;
    switch (msg.type) {
      case "status":
        this.emit("status", { status: msg.status, message: msg.message || "", lag: msg.lag, sessionId: msg.session_id });
        break;
      case "partial_transcript": {
        const seg = {
          key: `${c.epoch}:${msg.segment_id}`,
          epoch: c.epoch,
          start: (msg.start || 0) + offset,
          end: (msg.end || msg.start || 0) + offset,
          text: msg.text || "",
          speaker: msg.speaker ?? null,
          committed: !!msg.committed,
        };
        if (seg.committed) {
          c.committedEnd = Math.max(c.committedEnd, msg.end || 0);
          this.committed = this.committed.filter((s) => s.key !== seg.key).concat([seg]);
          this.audio.trim(c.base + Math.floor(c.committedEnd * this.rate));
        }
        this.emit("segment", seg);
        break;
      }
      case "final": {
        this.finished = true;
        const earlier = this.committed.filter((s) => s.epoch < c.epoch);
        const own = (msg.segments || []).map((s, i) => ({
          key: `${c.epoch}:final:${i}`,
          epoch: c.epoch,
          start: (s.start || 0) + offset,
          end: (s.end || s.start || 0) + offset,
          text: s.text || "",
          speaker: s.speaker ?? null,
          committed: true,
        }));
        this.emit("final", { final: msg, segments: earlier.concat(own), resumedAt: offset });
        break;
      }
      case "error":
        if (isFatalCode(msg.code)) c.fatal = msg.message || msg.code;
        if (isBusyCode(msg.code)) this.busy = true;
        this.emit("problem", { code: msg.code || "", message: msg.message || msg.code || "The server reported an error." });
        break;
      default:
        break;
    }
  }

  resumeFrom(c) {
    if (!c) return 0;
    return Math.min(this.audio.total, c.base + Math.floor(c.committedEnd * this.rate));
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
    // Tentative text of this connection will be transcribed again after the resend.
    this.emit("retract", { epoch: c.epoch });
    const busy = this.busy || e.code === 1013;
    const delay = Math.min(10, (busy ? 3 : 0.5) * 2 ** this.retries);
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
    const from = this.resumeFrom(c);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.open(from);
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
