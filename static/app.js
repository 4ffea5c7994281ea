// The recording page: wires the recorder and the server session to the meeting on screen
// (shown-meeting.js), the stored meetings and uploads.
//
// Page states: idle -> starting -> recording -> finishing -> done (or failed);
// from done/failed/idle, Record starts a new recording. After a reload during a
// recording the page re-attaches to it: interrupted -> (Continue) recording, or
// (Finish) finishing. "done" is also the state of a stored meeting opened from the list.

import { getMeeting, setToken } from "./api.js";
import { forget, recall, remember, takeToken } from "./current.js";
import { clock, upsertSegment } from "./format.js";
import { $, FINISHED, STATUS_WORDS, markStage, page, say, setState, showNotice, ui, updateTitle } from "./page-state.js";
import { MicrophoneError, Recorder } from "./recorder.js";
import { MeetingSession } from "./session.js";
import {
  awaitStored,
  exports,
  panel,
  resetView,
  show,
  showFinal,
  showStored,
  uploadAccepted,
  uploadSay,
} from "./shown-meeting.js";
import { setupUpload } from "./upload.js";

const SILENCE_HINT_AFTER_S = 6;
const INTERRUPTED_WORDS =
  "This recording was still running when the page reloaded, and the server kept it. " +
  "Press Continue recording to go on in the same meeting, or Finish to end it now.";

const token = takeToken();
setToken(token);
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

let recorder = null;
let ticker = null;
let quietSince = 0;
let wakeLock = null;

// ---- recording ----------------------------------------------------------------

async function startRecording() {
  resetView();
  forget();
  setState("starting");
  say("Asking for the microphone…");
  const s = new MeetingSession({ url: wsUrl, sampleRate: 16000, title: ui.title.value.trim() || null, token });
  page.session = s;
  if (!(await startCapture(s))) {
    page.session = null;
    return;
  }
  listen(s);
  s.start();
  page.recordedAt = new Date();
  capturing();
}

/** Re-attach to the recording this tab was making before a reload (the server keeps it a while). */
function reattach(id) {
  resetView();
  const s = new MeetingSession({ url: wsUrl, sampleRate: 16000, token, resumeId: id });
  page.session = s;
  page.recordedAt = null;
  listen(s);
  s.start();
  setState("interrupted");
  say("Reconnecting to the recording that was running before the page reloaded…");
}

/** Interrupted -> recording: the microphone feeds the re-attached session. */
async function continueRecording() {
  setState("starting");
  say("Asking for the microphone…");
  if (await startCapture(page.session, "interrupted")) capturing();
}

function finishInterrupted() {
  if (page.state !== "interrupted") return;
  setState("finishing");
  say("Finishing the recording with the audio the server has…");
  page.session?.stop();
}

/** Start the microphone into session `s`; false (and the reason shown) when it cannot. */
async function startCapture(s, fallbackState = "idle") {
  recorder = new Recorder({
    onFrame: (pcm) => s.send(pcm),
    onLevel: showLevel,
    onEnded: () => {
      if (page.state === "recording") {
        showNotice("The microphone stopped (unplugged or switched off). The recording so far is being finished.", "warning");
        stopRecording();
      }
    },
  });
  try {
    await recorder.start();
    return true;
  } catch (err) {
    recorder = null;
    setState(fallbackState);
    const message = err instanceof MicrophoneError ? err.message : `Recording could not start: ${err.message || err}`;
    say(message);
    showNotice(message, "error");
    return false;
  }
}

function capturing() {
  quietSince = performance.now();
  setState("recording");
  markStage("recording");
  say(STATUS_WORDS.recording);
  ticker = setInterval(tick, 250);
  tick();
  keepAwake(true);
}

async function stopRecording() {
  if (page.state !== "recording") return;
  setState("finishing");
  say("Finishing: sending the last of the audio…");
  clearInterval(ticker);
  tick();
  ui.level.style.transform = "scaleX(0)";
  keepAwake(false);
  const r = recorder;
  recorder = null;
  if (r) await r.stop();
  page.session?.stop();
}

function tick() {
  ui.clock.textContent = clock(page.session ? page.session.seconds : 0);
  updateTitle();
  if (page.state === "recording" && performance.now() - quietSince > SILENCE_HINT_AFTER_S * 1000) {
    if (ui.notice.hidden) showNotice("We can't hear anything. Check that the microphone is not muted.", "hint");
  }
}

function showLevel({ rms, peak }) {
  const db = 20 * Math.log10(Math.max(rms, 1e-5));
  const x = Math.min(1, Math.max(0, (db + 60) / 54));
  ui.level.style.transform = `scaleX(${x.toFixed(3)})`;
  ui.level.classList.toggle("hot", peak > 0.97);
  if (peak > 0.003) {
    quietSince = performance.now();
    if (ui.notice.dataset.kind === "hint") showNotice("");
  }
}

async function keepAwake(on) {
  try {
    if (on && "wakeLock" in navigator) wakeLock = await navigator.wakeLock.request("screen");
    else if (!on && wakeLock) {
      await wakeLock.release();
      wakeLock = null;
    }
  } catch {
    wakeLock = null; // not allowed here; recording works anyway
  }
}

// ---- server events ----------------------------------------------------------------

function statusWords(detail) {
  const recording = page.state === "recording";
  if (detail.resumed) return page.state === "interrupted" ? INTERRUPTED_WORDS : "Reconnected: recording continues in the same session.";
  if (page.state === "interrupted" && detail.status === "recording") return null;
  let words = STATUS_WORDS[detail.status] || detail.message || detail.status;
  if (detail.status === "queued" && recording) words = "Recording. The server is busy, so the live text may lag; nothing is lost.";
  if (detail.status === "done" && !page.result) words = "Done. Putting the results together…";
  if (typeof detail.lag === "number" && detail.lag >= 3 && recording) words += ` Live text is about ${Math.round(detail.lag)} s behind.`;
  return words;
}

function listen(s) {
  const mine = (handler) => (e) => s === page.session && handler(e.detail);
  s.addEventListener("session", mine(({ id }) => remember(id, "recording")));
  s.addEventListener("status", mine((detail) => {
    markStage(detail.status);
    const words = statusWords(detail);
    if (words) say(words);
  }));
  s.addEventListener("segment", mine((detail) => {
    if (page.result) return;
    page.segments = upsertSegment(page.segments, detail);
    show();
    exports.enable(true);
  }));
  s.addEventListener("retract", mine((detail) => {
    page.segments = page.segments.filter((seg) => seg.committed || seg.epoch !== detail.epoch);
    show();
  }));
  s.addEventListener("fallback", mine(({ message }) => {
    s.fallbackNote = message;
    showNotice(message, "warning");
    say(message);
  }));
  s.addEventListener("orphaned", mine(({ sessionId }) => {
    clearInterval(ticker);
    recorder?.stop();
    recorder = null;
    setState("finishing");
    say("The server finished this recording on its own; loading it…");
    showNotice("");
    awaitStored(sessionId);
  }));
  s.addEventListener("final", mine((detail) => {
    showFinal(detail);
    markStage("done");
    setState("done");
    say(page.segments.length ? STATUS_WORDS.done : "Done. No speech was recognised in this recording.");
    if (ui.notice.dataset.kind !== "error" && !s.fallbackNote) showNotice("");
  }));
  s.addEventListener("problem", mine((detail) => showNotice(detail.message, "error")));
  s.addEventListener("link", mine((detail) => onLink(s, detail)));
}

function onLink(s, detail) {
  ui.link.hidden = detail.state === "open" || detail.state === "closed" || detail.state === "connecting";
  ui.link.textContent = detail.state === "lost" ? "Reconnecting…" : detail.state === "failed" ? "Offline" : "";
  if (detail.state === "lost") {
    showNotice(detail.message, "warning");
    say(detail.message);
  } else if (detail.state === "open" && ui.notice.dataset.kind === "warning" && !s.fallbackNote) {
    showNotice("Reconnected. The audio captured meanwhile has been sent.", "info");
  } else if (detail.state === "failed") {
    showNotice(detail.message, "error");
    say(detail.message);
    ui.wav.hidden = s.audio.total === 0;
    forget();
    const settle = () => {
      setState("failed");
      say(detail.message);
    };
    if (page.state === "recording") stopRecording().then(settle);
    else settle();
  }
}

// ---- the buttons ----------------------------------------------------------------

ui.record.addEventListener("click", () => {
  const state = page.state;
  if (state === "idle" || state === "done" || state === "failed") startRecording();
  else if (state === "recording") stopRecording();
  else if (state === "interrupted") continueRecording();
  else if (state === "starting") say("Waiting for the microphone… allow it in the browser's prompt.");
  else if (state === "finishing") say("Still finishing the last recording. The summary will appear here shortly.");
});
ui.finish.addEventListener("click", finishInterrupted);

setupUpload({ button: $("upload"), input: $("upload-file"), overlay: $("drop-overlay"), say: uploadSay, onAccepted: uploadAccepted });

window.addEventListener("beforeunload", (e) => {
  if (page.state === "recording" || page.state === "finishing" || page.state === "starting") {
    e.preventDefault();
    e.returnValue = "";
  }
});

// ---- start-up: the meeting this tab had on screen before a reload -----------------------

setState("idle");
panel.load();
const kept = recall();
if (kept?.phase === "recording") reattach(kept.id);
else if (kept?.phase === "done") {
  getMeeting(kept.id).then(
    (m) => (FINISHED.has(m.status) ? showStored(m) : awaitStored(m.id)),
    () => forget(),
  );
}
