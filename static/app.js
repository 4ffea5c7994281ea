// The recording page: wires the recorder, the server session and the views.
//
// Page states: idle -> starting -> recording -> finishing -> done (or failed);
// from done/failed/idle, Record starts a new recording.

import {
  clock,
  displayNames,
  fileStem,
  relabelSummary,
  speakerName,
  toJSON,
  toMarkdown,
  toPlainText,
  toSRT,
  toVTT,
  upsertSegment,
} from "./format.js";
import { MicrophoneError, Recorder } from "./recorder.js";
import { MeetingSession } from "./session.js";
import { renderSummary } from "./summary-view.js";
import { TranscriptView } from "./transcript-view.js";

const $ = (id) => document.getElementById(id);
const ui = {
  record: $("record"),
  label: document.querySelector("#record .label"),
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

const token = takeToken();
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

/**
 * The access token from the page link: `#token=…` (a fragment never reaches the server) or the
 * older `?token=…`. It is then removed from the address bar and history, and the socket carries
 * it in a subprotocol (session.js), never in its URL.
 */
function takeToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const found = hash.get("token") || query.get("token");
  if (found) {
    hash.delete("token");
    query.delete("token");
    const search = query.toString() ? `?${query}` : "";
    const fragment = hash.toString() ? `#${hash}` : "";
    history.replaceState(history.state, "", `${location.pathname}${search}${fragment}`);
  }
  return found;
}

let state = "idle";
let session = null;
let recorder = null;
let segments = [];
let result = null; // {final, resumedAt}
let recordedAt = null;
let custom = {}; // speaker names the person typed
let names = {}; // raw label -> name shown
let ticker = null;
let quietSince = 0;
let wakeLock = null;

const view = new TranscriptView($("transcript"), $("jump"), renameSpeaker);
const nameOf = (raw) => names[raw] || speakerName(raw);

// ---- state and status -------------------------------------------------------

function setState(next) {
  state = next;
  document.body.dataset.state = next;
  const recording = next === "recording";
  ui.record.setAttribute("aria-pressed", String(recording));
  const busy = next === "starting" || next === "finishing";
  ui.record.setAttribute("aria-disabled", String(busy));
  ui.label.textContent = { starting: "Starting…", recording: "Stop", finishing: "Finishing…" }[next] || "Record";
  ui.record.setAttribute("aria-label", recording ? "Stop recording" : busy ? ui.label.textContent : "Start recording");
  ui.title.disabled = next !== "idle" && next !== "done" && next !== "failed";
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

// ---- recording ----------------------------------------------------------------

async function startRecording() {
  segments = [];
  result = null;
  custom = {};
  names = {};
  view.clear();
  ui.summary.replaceChildren();
  ui.placeholder.hidden = false;
  ui.wav.hidden = true;
  showNotice("");
  setExportsEnabled(false);
  markStage("");
  for (const li of ui.stages.children) li.className = "";
  setState("starting");
  say("Asking for the microphone…");

  session = new MeetingSession({ url: wsUrl, sampleRate: 16000, title: ui.title.value.trim() || null, token });
  const s = session;
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
  } catch (err) {
    recorder = null;
    session = null;
    setState("idle");
    const message = err instanceof MicrophoneError ? err.message : `Recording could not start: ${err.message || err}`;
    say(message);
    showNotice(message, "error");
    return;
  }
  listen(s);
  s.start();
  recordedAt = new Date();
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
  ui.clock.textContent = clock(session ? session.audio.seconds : 0);
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
  s.addEventListener("status", ({ detail }) => {
    if (s !== session) return;
    markStage(detail.status);
    let words = STATUS_WORDS[detail.status] || detail.message || detail.status;
    if (detail.status === "queued" && state === "recording") {
      words = "Recording. The server is busy, so the live text may lag; nothing is lost.";
    }
    if (detail.status === "done" && !result) words = "Done. Putting the results together…";
    if (typeof detail.lag === "number" && detail.lag >= 3 && state === "recording") {
      words += ` Live text is about ${Math.round(detail.lag)} s behind.`;
    }
    say(words);
  });
  s.addEventListener("segment", ({ detail }) => {
    if (s !== session || result) return;
    segments = upsertSegment(segments, detail);
    show();
    setExportsEnabled(true);
  });
  s.addEventListener("retract", ({ detail }) => {
    if (s !== session) return;
    segments = segments.filter((seg) => seg.committed || seg.epoch !== detail.epoch);
    show();
  });
  s.addEventListener("final", ({ detail }) => {
    if (s !== session) return;
    result = detail;
    segments = detail.segments;
    names = displayNames(segments, custom);
    view.setNames(names);
    view.replaceAll(segments);
    showSummary();
    setExportsEnabled(segments.length > 0 || !!detail.final.summary);
    markStage("done");
    setState("done");
    say(segments.length ? STATUS_WORDS.done : "Done. No speech was recognised in this recording.");
    if (ui.notice.dataset.kind !== "error") showNotice("");
  });
  s.addEventListener("problem", ({ detail }) => {
    if (s !== session) return;
    showNotice(detail.message, "error");
  });
  s.addEventListener("link", ({ detail }) => {
    if (s !== session) return;
    ui.link.hidden = detail.state === "open" || detail.state === "closed" || detail.state === "connecting";
    ui.link.textContent = detail.state === "lost" ? "Reconnecting…" : detail.state === "failed" ? "Offline" : "";
    if (detail.state === "lost") {
      showNotice(detail.message, "warning");
      say(detail.message);
    } else if (detail.state === "open" && ui.notice.dataset.kind === "warning") {
      showNotice("Reconnected. The audio captured meanwhile has been sent.", "info");
      if (state === "recording") say(STATUS_WORDS.recording);
    } else if (detail.state === "failed") {
      showNotice(detail.message, "error");
      say(detail.message);
      ui.wav.hidden = s.audio.total === 0;
      const settle = () => {
        setState("failed");
        say(detail.message);
      };
      if (state === "recording") stopRecording().then(settle);
      else settle();
    }
  });
}

// ---- speakers ----------------------------------------------------------------

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

function renameSpeaker(raw) {
  const current = nameOf(raw);
  const next = window.prompt(`Name for “${current}” (used in the transcript, summary and exports)`, current);
  if (next == null) return;
  custom = { ...custom, [raw]: next.trim() };
  names = displayNames(segments, custom);
  view.setNames(names);
  showSummary();
}

// ---- exports ----------------------------------------------------------------

function setExportsEnabled(on) {
  for (const id of ["copy", "download-md", "download-json", "download-srt", "download-vtt"]) $(id).disabled = !on;
}

function doc() {
  return {
    title: ui.title.value.trim() || null,
    recordedAt: recordedAt || new Date(),
    duration: session ? session.audio.seconds : 0,
    segments: segments.filter((s) => s.committed || !result),
    summary: result ? relabelSummary(result.final.summary, names) : null,
    names,
    sessionId: result ? result.final.session_id : null,
    provider: result ? result.final.provider : null,
  };
}

function download(text, ext, type) {
  const blob = text instanceof Blob ? text : new Blob([text], { type: `${type};charset=utf-8` });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = `${fileStem(ui.title.value.trim(), recordedAt || new Date())}.${ext}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  toast(`Downloaded ${a.download}`);
}

async function copyTranscript() {
  const text = toPlainText(doc().segments, names);
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API refused (permissions, focus): fall back to a selection copy.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast("Transcript copied");
}

$("copy").addEventListener("click", copyTranscript);
$("download-md").addEventListener("click", () => download(toMarkdown(doc()), "md", "text/markdown"));
$("download-json").addEventListener("click", () => download(toJSON(doc()), "json", "application/json"));
$("download-srt").addEventListener("click", () => download(toSRT(doc().segments, names), "srt", "application/x-subrip"));
$("download-vtt").addEventListener("click", () => download(toVTT(doc().segments, names), "vtt", "text/vtt"));
ui.wav.addEventListener("click", () => session && download(session.audio.toWav(), "wav", "audio/wav"));

// ---- the button ----------------------------------------------------------------

ui.record.addEventListener("click", () => {
  if (state === "idle" || state === "done" || state === "failed") startRecording();
  else if (state === "recording") stopRecording();
  else if (state === "starting") say("Waiting for the microphone… allow it in the browser's prompt.");
  else if (state === "finishing") say("Still finishing the last recording. The summary will appear here shortly.");
});

window.addEventListener("beforeunload", (e) => {
  if (state === "recording" || state === "finishing" || state === "starting") {
    e.preventDefault();
    e.returnValue = "";
  }
});

setState("idle");
