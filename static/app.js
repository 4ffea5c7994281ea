// The recording page: wires the recorder, the server session, the views, the
// stored meetings and uploads.
//
// Page states: idle -> starting -> recording -> finishing -> done (or failed);
// from done/failed/idle, Record starts a new recording. After a reload during a
// recording the page re-attaches to it: interrupted -> (Continue) recording, or
// (Finish) finishing. "done" is also the state of a stored meeting opened from the list.

import { deleteMeeting, getMeeting, patchMeeting, setToken } from "./api.js";
import { forget, recall, remember, takeToken } from "./current.js";
import { clock, displayNames, relabelSummary, speakerName, upsertSegment } from "./format.js";
import { setupLocalExports } from "./local-exports.js";
import { MeetingBar } from "./meeting-bar.js";
import { MeetingsPanel } from "./meetings-view.js";
import { MicrophoneError, Recorder } from "./recorder.js";
import { MeetingSession } from "./session.js";
import { renderSummary } from "./summary-view.js";
import { TranscriptView } from "./transcript-view.js";
import { setupUpload } from "./upload.js";

const $ = (id) => document.getElementById(id);
const ui = {
  record: $("record"),
  label: document.querySelector("#record .label"),
  finish: $("finish"),
  clock: $("clock"),
  level: $("level"),
  title: $("title"),
  stages: $("stages"),
  status: $("status"),
  notice: $("notice"),
  link: $("link"),
  summary: $("summary"),
  placeholder: $("summary-placeholder"),
  toast: $("toast"),
  wav: $("download-wav"),
  uploadStatus: $("upload-status"),
};

const STATUS_WORDS = {
  recording: "Recording. The transcript appears as people speak.",
  queued: "Waiting for a free transcriber…",
  transcribing: "Transcribing the audio…",
  diarizing: "Working out who said what…",
  summarizing: "Writing the summary…",
  done: "Done. The summary is ready.",
};
const STAGE_OF = { recording: "recording", queued: "transcribing", transcribing: "transcribing", diarizing: "diarizing", summarizing: "summarizing", done: "done" };
const SILENCE_HINT_AFTER_S = 6;
const BUSY = new Set(["starting", "recording", "finishing", "interrupted"]);
const FINISHED = new Set(["done", "failed", "recovered"]);
const INTERRUPTED_WORDS =
  "This recording was still running when the page reloaded, and the server kept it. " +
  "Press Continue recording to go on in the same meeting, or Finish to end it now.";

const token = takeToken();
setToken(token);
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

let state = "idle";
let session = null;
let recorder = null;
let segments = [];
let result = null; // {final, resumedAt}
let recordedAt = null;
let custom = {}; // speaker names the person typed
let names = {}; // raw label -> name shown
let meeting = null; // the stored meeting on screen: {id, title, created_at, duration, source}
let ticker = null;
let quietSince = 0;
let wakeLock = null;
let pendingUpload = null; // {id, name}
let awaiting = null; // id of the meeting the panes wait for (awaitStored)
let pendingOpen = null; // id of a listed meeting opened while still queued or processing

const view = new TranscriptView($("transcript"), $("jump"), renameSpeaker);
const nameOf = (raw) => names[raw] || speakerName(raw);
const bar = new MeetingBar({ root: $("meeting"), onRenameTitle: renameTitle, onRenameSpeaker: renameSpeaker, onDelete: removeMeeting });
const panel = new MeetingsPanel({
  list: $("meeting-list"),
  more: $("meetings-more"),
  empty: $("meetings-empty"),
  problem: $("meetings-problem"),
  onOpen: openMeeting,
  onChange: meetingChanged,
});
const exports = setupLocalExports({ doc, audio: () => session?.audio, toast });

// ---- state and status -------------------------------------------------------

function setState(next) {
  state = next;
  document.body.dataset.state = next;
  const recording = next === "recording";
  ui.record.setAttribute("aria-pressed", String(recording));
  const busy = next === "starting" || next === "finishing";
  ui.record.setAttribute("aria-disabled", String(busy));
  const labels = { starting: "Starting…", recording: "Stop", finishing: "Finishing…", interrupted: "Continue recording" };
  ui.label.textContent = labels[next] || "Record";
  ui.record.setAttribute("aria-label", recording ? "Stop recording" : ui.label.textContent === "Record" ? "Start recording" : ui.label.textContent);
  ui.finish.hidden = next !== "interrupted";
  ui.title.disabled = BUSY.has(next);
  document.body.classList.toggle("busy", BUSY.has(next));
  updateTitle();
}

function say(text) {
  ui.status.textContent = text;
}

function showNotice(text, kind = "error") {
  ui.notice.textContent = text;
  ui.notice.dataset.kind = kind;
  ui.notice.hidden = !text;
}

function toast(text) {
  ui.toast.textContent = text;
  ui.toast.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => ui.toast.classList.remove("show"), 2200);
}

function markStage(status) {
  const stage = STAGE_OF[status];
  if (!stage) return;
  let reached = true;
  for (const li of ui.stages.children) {
    const current = li.dataset.stage === stage;
    li.classList.toggle("current", current && stage !== "done");
    li.classList.toggle("complete", (reached && !current) || (current && stage === "done"));
    if (current) reached = false;
  }
}

function updateTitle() {
  const base = "Meeting notes";
  document.title = state === "recording" ? `● ${ui.clock.textContent} Recording – ${base}` : base;
}

/** Empty transcript, summary and bar: ready for a new meeting. */
function resetView() {
  awaiting = null;
  pendingOpen = null;
  segments = [];
  result = null;
  custom = {};
  names = {};
  meeting = null;
  view.clear();
  ui.summary.replaceChildren();
  ui.placeholder.hidden = false;
  ui.wav.hidden = true;
  bar.hide();
  panel.markCurrent(null);
  showNotice("");
  exports.enable(false);
  for (const li of ui.stages.children) li.className = "";
}

// ---- recording ----------------------------------------------------------------

async function startRecording() {
  resetView();
  forget();
  setState("starting");
  say("Asking for the microphone…");
  session = new MeetingSession({ url: wsUrl, sampleRate: 16000, title: ui.title.value.trim() || null, token });
  const s = session;
  if (!(await startCapture(s))) {
    session = null;
    return;
  }
  listen(s);
  s.start();
  recordedAt = new Date();
  capturing();
}

/** Re-attach to the recording this tab was making before a reload (the server keeps it a while). */
function reattach(id) {
  resetView();
  session = new MeetingSession({ url: wsUrl, sampleRate: 16000, token, resumeId: id });
  listen(session);
  session.start();
  recordedAt = null;
  setState("interrupted");
  say("Reconnecting to the recording that was running before the page reloaded…");
}

/** Interrupted -> recording: the microphone feeds the re-attached session. */
async function continueRecording() {
  const s = session;
  setState("starting");
  say("Asking for the microphone…");
  if (!(await startCapture(s, "interrupted"))) return;
  capturing();
}

function finishInterrupted() {
  if (state !== "interrupted") return;
  setState("finishing");
  say("Finishing the recording with the audio the server has…");
  session?.stop();
}

/** Start the microphone into session `s`; false (and the reason shown) when it cannot. */
async function startCapture(s, fallbackState = "idle") {
  recorder = new Recorder({
    onFrame: (pcm) => s.send(pcm),
    onLevel: showLevel,
    onEnded: () => {
      if (state === "recording") {
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
  if (state !== "recording") return;
  setState("finishing");
  say("Finishing: sending the last of the audio…");
  clearInterval(ticker);
  tick();
  ui.level.style.transform = "scaleX(0)";
  keepAwake(false);
  const r = recorder;
  recorder = null;
  if (r) await r.stop();
  session?.stop();
}

function tick() {
  ui.clock.textContent = clock(session ? session.seconds : 0);
  updateTitle();
  if (state === "recording" && performance.now() - quietSince > SILENCE_HINT_AFTER_S * 1000) {
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

function listen(s) {
  const mine = (handler) => (e) => s === session && handler(e.detail);
  s.addEventListener("session", mine(({ id }) => remember(id, "recording")));
  s.addEventListener("status", mine((detail) => {
    markStage(detail.status);
    let words = STATUS_WORDS[detail.status] || detail.message || detail.status;
    if (detail.resumed) words = state === "interrupted" ? INTERRUPTED_WORDS : "Reconnected: recording continues in the same session.";
    else if (state === "interrupted" && detail.status === "recording") return;
    if (detail.status === "queued" && state === "recording") {
      words = "Recording. The server is busy, so the live text may lag; nothing is lost.";
    }
    if (detail.status === "done" && !result) words = "Done. Putting the results together…";
    if (typeof detail.lag === "number" && detail.lag >= 3 && state === "recording") {
      words += ` Live text is about ${Math.round(detail.lag)} s behind.`;
    }
    say(words);
  }));
  s.addEventListener("segment", mine((detail) => {
    if (result) return;
    segments = upsertSegment(segments, detail);
    show();
    exports.enable(true);
  }));
  s.addEventListener("retract", mine((detail) => {
    segments = segments.filter((seg) => seg.committed || seg.epoch !== detail.epoch);
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
    result = detail;
    segments = detail.segments;
    names = displayNames(segments, custom);
    view.setNames(names);
    view.replaceAll(segments);
    showSummary();
    exports.enable(segments.length > 0 || !!detail.final.summary);
    markStage("done");
    setState("done");
    say(segments.length ? STATUS_WORDS.done : "Done. No speech was recognised in this recording.");
    if (ui.notice.dataset.kind !== "error" && !s.fallbackNote) showNotice("");
    const id = detail.final.session_id;
    meeting = { id, title: ui.title.value.trim() || null, created_at: (recordedAt || new Date()).toISOString(), duration: detail.final.metrics?.audio_seconds, source: "live" };
    remember(id, "done");
    bar.show(meeting, names);
    panel.load().then(() => panel.markCurrent(id));
  }));
  s.addEventListener("problem", mine((detail) => showNotice(detail.message, "error")));
  s.addEventListener("link", mine((detail) => {
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
      if (state === "recording") stopRecording().then(settle);
      else settle();
    }
  }));
}

// ---- stored meetings ------------------------------------------------------------

/** Show a stored meeting in the panes (it must not interrupt a recording). */
function showStored(m) {
  session = null;
  resetView();
  meeting = { id: m.id, title: m.title, created_at: m.created_at, duration: m.duration, source: m.source };
  segments = (m.segments || []).map((s, i) => ({ ...s, key: `stored:${i}`, epoch: 0, committed: true }));
  custom = { ...(m.speakers || {}) };
  names = displayNames(segments, custom);
  result = { final: { summary: m.summary, provider: m.provider, errors: m.errors, session_id: m.id }, resumedAt: 0 };
  recordedAt = new Date(m.created_at);
  ui.title.value = m.title || "";
  ui.clock.textContent = clock(m.duration || 0);
  view.setNames(names);
  view.replaceAll(segments);
  if (m.summary) showSummary();
  exports.enable(segments.length > 0);
  markStage("done");
  setState("done");
  say(m.status === "failed" ? `This meeting failed: ${(m.errors || []).join("; ") || "no reason given"}.` : `Showing “${m.title || "Untitled meeting"}” from ${recordedAt.toLocaleString()}.`);
  bar.show(meeting, names);
  panel.markCurrent(m.id);
  remember(m.id, "done");
}

/** Wait until meeting `id` is finished in the store, then show it (unless the page moved on). */
async function awaitStored(id) {
  awaiting = id;
  while (awaiting === id) {
    let m = null;
    try {
      m = await getMeeting(id);
    } catch (err) {
      if (err.status === 404) {
        forget();
        setState("idle");
        say("That meeting is no longer stored on the server.");
        return;
      }
    }
    if (awaiting !== id) return;
    if (m && FINISHED.has(m.status)) {
      awaiting = null;
      if (!BUSY.has(state) || state === "finishing") showStored(m);
      panel.load();
      return;
    }
    if (m) say(m.status === "processing" ? "The server is finishing this meeting…" : "Waiting for the server to finish this meeting…");
    await new Promise((r) => setTimeout(r, 1500));
  }
}

async function openMeeting(id) {
  if (BUSY.has(state)) {
    toast("Stop the recording first: the page shows one meeting at a time.");
    return;
  }
  try {
    const m = await getMeeting(id);
    if (FINISHED.has(m.status)) showStored(m);
    else {
      pendingOpen = id;
      panel.watch(id);
      say(`“${m.title || "Untitled meeting"}” is still ${m.status}; it opens when it is done.`);
    }
  } catch (err) {
    showNotice(`That meeting could not be opened: ${err.message}`, "error");
  }
}

/** A watched meeting changed (polled): follow the upload the person is waiting for. */
function meetingChanged(m) {
  if (m.id === pendingOpen && FINISHED.has(m.status)) {
    pendingOpen = null;
    if (!BUSY.has(state)) showStored(m);
  }
  if (!pendingUpload || m.id !== pendingUpload.id) return;
  const name = pendingUpload.name;
  if (m.status === "processing") uploadSay(`“${name}” is being transcribed…`, "info");
  else if (m.status === "queued") uploadSay(`“${name}” is waiting for the transcriber…`, "info");
  else {
    pendingUpload = null;
    const failed = m.status === "failed";
    uploadSay(failed ? `“${name}” failed: ${(m.errors || []).join("; ")}` : `“${name}” is done.`, failed ? "error" : "info");
    if (!BUSY.has(state)) showStored(m);
  }
}

function uploadSay(text, kind) {
  ui.uploadStatus.textContent = text;
  ui.uploadStatus.dataset.kind = kind;
  ui.uploadStatus.hidden = !text;
}

// ---- speakers and titles ----------------------------------------------------------------

function show() {
  names = displayNames(segments, custom);
  view.setNames(names);
  view.render(segments);
}

function showSummary() {
  if (!result) return;
  renderSummary(ui.summary, {
    summary: relabelSummary(result.final.summary, names),
    provider: result.final.provider,
    errors: result.final.errors,
    resumedAt: result.resumedAt,
    nameOf,
    onTime: (t) => view.reveal(t),
  });
  ui.placeholder.hidden = true;
}

async function renameSpeaker(raw) {
  const current = nameOf(raw);
  const next = window.prompt(`Name for “${current}” (used in the transcript, summary and exports)`, current);
  if (next == null) return;
  custom = { ...custom, [raw]: next.trim() };
  names = displayNames(segments, custom);
  view.setNames(names);
  showSummary();
  if (!meeting || state !== "done") return; // a live recording: names go with the exports
  try {
    const m = await patchMeeting(meeting.id, { speakers: { [raw]: next.trim() } });
    bar.setNames(names);
    panel.put(m);
    toast(`Renamed to ${nameOf(raw)}`);
  } catch (err) {
    showNotice(`The new name could not be saved on the server: ${err.message}`, "error");
  }
}

async function renameTitle() {
  if (!meeting) return;
  const next = window.prompt("Title of this meeting", meeting.title || "");
  if (next == null) return;
  try {
    const m = await patchMeeting(meeting.id, { title: next.trim() });
    meeting.title = m.title;
    ui.title.value = m.title || "";
    bar.show(meeting, names);
    panel.put(m);
    toast("Title saved");
  } catch (err) {
    showNotice(`The title could not be saved: ${err.message}`, "error");
  }
}

async function removeMeeting() {
  if (!meeting) return;
  const what = meeting.title ? `“${meeting.title}”` : "this meeting";
  if (!window.confirm(`Delete ${what}? Its transcript, summary and audio are removed from the server for good.`)) return;
  const id = meeting.id;
  try {
    await deleteMeeting(id);
  } catch (err) {
    if (err.status !== 404) {
      showNotice(`The meeting could not be deleted: ${err.message}`, "error");
      return;
    }
  }
  panel.remove(id);
  forget();
  session = null;
  resetView();
  ui.title.value = "";
  ui.clock.textContent = clock(0);
  setState("idle");
  say("The meeting was deleted. Press Record to start a new one.");
}

// ---- exports ----------------------------------------------------------------

function doc() {
  return {
    title: ui.title.value.trim() || null,
    recordedAt: recordedAt || new Date(),
    duration: session ? session.seconds : meeting?.duration || 0,
    segments: segments.filter((s) => s.committed || !result),
    summary: result ? relabelSummary(result.final.summary, names) : null,
    names,
    sessionId: result ? result.final.session_id : null,
    provider: result ? result.final.provider : null,
  };
}

// ---- the buttons ----------------------------------------------------------------

ui.record.addEventListener("click", () => {
  if (state === "idle" || state === "done" || state === "failed") startRecording();
  else if (state === "recording") stopRecording();
  else if (state === "interrupted") continueRecording();
  else if (state === "starting") say("Waiting for the microphone… allow it in the browser's prompt.");
  else if (state === "finishing") say("Still finishing the last recording. The summary will appear here shortly.");
});
ui.finish.addEventListener("click", finishInterrupted);

setupUpload({
  button: $("upload"),
  input: $("upload-file"),
  overlay: $("drop-overlay"),
  say: uploadSay,
  onAccepted: ({ id, status }, file) => {
    pendingUpload = { id, name: file.name };
    panel.put({ id, title: file.name, status, created_at: new Date().toISOString(), duration: null, speakers: {}, source: "upload" });
  },
});

window.addEventListener("beforeunload", (e) => {
  if (state === "recording" || state === "finishing" || state === "starting") {
    e.preventDefault();
    e.returnValue = "";
  }
});

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
