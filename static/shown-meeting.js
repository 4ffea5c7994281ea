// The meeting on screen (transcript and summary panes, the #meeting bar) and the stored
// meetings around it: open one from the list, wait for one to finish, follow an upload,
// rename speakers and the title, delete. A live recording fills the same panes (app.js).

import { deleteMeeting, getMeeting, patchMeeting } from "./api.js";
import { forget, remember } from "./current.js";
import { clock, displayNames, relabelSummary, speakerName } from "./format.js";
import { setupLocalExports } from "./local-exports.js";
import { MeetingBar } from "./meeting-bar.js";
import { MeetingsPanel } from "./meetings-view.js";
import { $, BUSY, FINISHED, clearStages, markStage, page, say, setState, showNotice, toast, ui } from "./page-state.js";
import { renderSummary } from "./summary-view.js";
import { TranscriptView } from "./transcript-view.js";

const POLL_MS = 1500;

let awaiting = null; // id of the meeting the panes wait for (awaitStored)
let pendingOpen = null; // id of a listed meeting opened while still queued or processing
let pendingUpload = null; // {id, name}: the upload #upload-status follows

export const view = new TranscriptView($("transcript"), $("jump"), renameSpeaker);
export const nameOf = (raw) => page.names[raw] || speakerName(raw);
export const bar = new MeetingBar({ root: $("meeting"), onRenameTitle: renameTitle, onRenameSpeaker: renameSpeaker, onDelete: removeMeeting });
export const panel = new MeetingsPanel({
  list: $("meeting-list"),
  more: $("meetings-more"),
  empty: $("meetings-empty"),
  problem: $("meetings-problem"),
  onOpen: openMeeting,
  onChange: meetingChanged,
});
export const exports = setupLocalExports({ doc, audio: () => page.session?.audio, toast });

/** Empty transcript, summary and bar: ready for a new meeting. */
export function resetView() {
  awaiting = null;
  pendingOpen = null;
  Object.assign(page, { segments: [], result: null, custom: {}, names: {}, meeting: null });
  view.clear();
  ui.summary.replaceChildren();
  ui.placeholder.hidden = false;
  ui.wav.hidden = true;
  bar.hide();
  panel.markCurrent(null);
  showNotice("");
  exports.enable(false);
  clearStages();
}

/** Re-render the transcript from `page.segments` (live updates). */
export function show() {
  page.names = displayNames(page.segments, page.custom);
  view.setNames(page.names);
  view.render(page.segments);
}

export function showSummary() {
  const result = page.result;
  if (!result) return;
  renderSummary(ui.summary, {
    summary: relabelSummary(result.final.summary, page.names),
    provider: result.final.provider,
    errors: result.final.errors,
    resumedAt: result.resumedAt,
    nameOf,
    onTime: (t) => view.reveal(t),
  });
  ui.placeholder.hidden = true;
}

/** A live recording's `final` arrived: show it, and the bar of its stored meeting. */
export function showFinal(detail) {
  page.result = detail;
  page.segments = detail.segments;
  page.names = displayNames(page.segments, page.custom);
  view.setNames(page.names);
  view.replaceAll(page.segments);
  showSummary();
  exports.enable(page.segments.length > 0 || !!detail.final.summary);
  const id = detail.final.session_id;
  page.meeting = {
    id,
    title: ui.title.value.trim() || null,
    created_at: (page.recordedAt || new Date()).toISOString(),
    duration: detail.final.metrics?.audio_seconds,
    source: "live",
  };
  remember(id, "done");
  bar.show(page.meeting, page.names);
  panel.load().then(() => panel.markCurrent(id));
}

/** Show a stored meeting in the panes (never over a recording: callers check). */
export function showStored(m) {
  page.session = null;
  resetView();
  page.meeting = { id: m.id, title: m.title, created_at: m.created_at, duration: m.duration, source: m.source };
  page.segments = (m.segments || []).map((s, i) => ({ ...s, key: `stored:${i}`, epoch: 0, committed: true }));
  page.custom = { ...(m.speakers || {}) };
  page.names = displayNames(page.segments, page.custom);
  page.result = { final: { summary: m.summary, provider: m.provider, errors: m.errors, session_id: m.id }, resumedAt: 0 };
  page.recordedAt = new Date(m.created_at);
  ui.title.value = m.title || "";
  ui.clock.textContent = clock(m.duration || 0);
  view.setNames(page.names);
  view.replaceAll(page.segments);
  if (m.summary) showSummary();
  exports.enable(page.segments.length > 0);
  markStage("done");
  setState("done");
  say(
    m.status === "failed"
      ? `This meeting failed: ${(m.errors || []).join("; ") || "no reason given"}.`
      : `Showing “${m.title || "Untitled meeting"}” from ${page.recordedAt.toLocaleString()}.`,
  );
  bar.show(page.meeting, page.names);
  panel.markCurrent(m.id);
  remember(m.id, "done");
}

/** Wait until meeting `id` is finished in the store, then show it (unless the page moved on). */
export async function awaitStored(id) {
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
      if (!BUSY.has(page.state) || page.state === "finishing") showStored(m);
      panel.load();
      return;
    }
    if (m) say(m.status === "processing" ? "The server is finishing this meeting…" : "Waiting for the server to finish this meeting…");
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function openMeeting(id) {
  if (BUSY.has(page.state)) {
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

/** An upload was accepted (202): list it and follow it in #upload-status. */
export function uploadAccepted({ id, status }, file) {
  pendingUpload = { id, name: file.name };
  panel.put({ id, title: file.name, status, created_at: new Date().toISOString(), duration: null, speakers: {}, source: "upload" });
}

export function uploadSay(text, kind) {
  ui.uploadStatus.textContent = text;
  ui.uploadStatus.dataset.kind = kind;
  ui.uploadStatus.hidden = !text;
}

/** A watched meeting changed (polled): open it if asked to, follow the upload being waited for. */
function meetingChanged(m) {
  if (m.id === pendingOpen && FINISHED.has(m.status)) {
    pendingOpen = null;
    if (!BUSY.has(page.state)) showStored(m);
  }
  if (!pendingUpload || m.id !== pendingUpload.id) return;
  const name = pendingUpload.name;
  if (m.status === "processing") uploadSay(`“${name}” is being transcribed…`, "info");
  else if (m.status === "queued") uploadSay(`“${name}” is waiting for the transcriber…`, "info");
  else {
    pendingUpload = null;
    const failed = m.status === "failed";
    uploadSay(failed ? `“${name}” failed: ${(m.errors || []).join("; ")}` : `“${name}” is done.`, failed ? "error" : "info");
    if (!BUSY.has(page.state)) showStored(m);
  }
}

async function renameSpeaker(raw) {
  const current = nameOf(raw);
  const next = window.prompt(`Name for “${current}” (used in the transcript, summary and exports)`, current);
  if (next == null) return;
  page.custom = { ...page.custom, [raw]: next.trim() };
  page.names = displayNames(page.segments, page.custom);
  view.setNames(page.names);
  showSummary();
  if (!page.meeting || page.state !== "done") return; // a live recording: names go with the page's exports
  try {
    const m = await patchMeeting(page.meeting.id, { speakers: { [raw]: next.trim() } });
    bar.setNames(page.names);
    panel.put(m);
    toast(`Renamed to ${nameOf(raw)}`);
  } catch (err) {
    showNotice(`The new name could not be saved on the server: ${err.message}`, "error");
  }
}

async function renameTitle() {
  const meeting = page.meeting;
  if (!meeting) return;
  const next = window.prompt("Title of this meeting", meeting.title || "");
  if (next == null) return;
  try {
    const m = await patchMeeting(meeting.id, { title: next.trim() });
    meeting.title = m.title;
    ui.title.value = m.title || "";
    bar.show(meeting, page.names);
    panel.put(m);
    toast("Title saved");
  } catch (err) {
    showNotice(`The title could not be saved: ${err.message}`, "error");
  }
}

async function removeMeeting() {
  const meeting = page.meeting;
  if (!meeting) return;
  const what = meeting.title ? `“${meeting.title}”` : "this meeting";
  if (!window.confirm(`Delete ${what}? Its transcript, summary and audio are removed from the server for good.`)) return;
  try {
    await deleteMeeting(meeting.id);
  } catch (err) {
    if (err.status !== 404) {
      showNotice(`The meeting could not be deleted: ${err.message}`, "error");
      return;
    }
  }
  panel.remove(meeting.id);
  forget();
  page.session = null;
  resetView();
  ui.title.value = "";
  ui.clock.textContent = clock(0);
  setState("idle");
  say("The meeting was deleted. Press Record to start a new one.");
}

/** The meeting on screen, for the page's own exports. */
function doc() {
  const { result, names } = page;
  return {
    title: ui.title.value.trim() || null,
    recordedAt: page.recordedAt || new Date(),
    duration: page.session ? page.session.seconds : page.meeting?.duration || 0,
    segments: page.segments.filter((s) => s.committed || !result),
    summary: result ? relabelSummary(result.final.summary, names) : null,
    names,
    sessionId: result ? result.final.session_id : null,
    provider: result ? result.final.provider : null,
  };
}
