// What every part of the page shares: the elements, the page's state and the meeting on
// screen (`page`), and the status line, notice, toast and stage strip.

export const $ = (id) => document.getElementById(id);

export const ui = {
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

export const STATUS_WORDS = {
  recording: "Recording. The transcript appears as people speak.",
  queued: "Waiting for a free transcriber…",
  transcribing: "Transcribing the audio…",
  diarizing: "Working out who said what…",
  summarizing: "Writing the summary…",
  done: "Done. The summary is ready.",
};
const STAGE_OF = { recording: "recording", queued: "transcribing", transcribing: "transcribing", diarizing: "diarizing", summarizing: "summarizing", done: "done" };
/** Page states during which the panes belong to a recording. */
export const BUSY = new Set(["starting", "recording", "finishing", "interrupted"]);
/** Stored statuses of a meeting that will not change any more. */
export const FINISHED = new Set(["done", "failed", "recovered"]);

/**
 * The page's mutable state. `state`: idle, starting, recording, finishing, done, failed,
 * interrupted. The rest describes the meeting on screen.
 */
export const page = {
  state: "idle",
  session: null, // the MeetingSession being recorded (or re-attached), if any
  segments: [],
  result: null, // {final, resumedAt}
  recordedAt: null,
  custom: {}, // speaker names the person typed
  names: {}, // raw label -> name shown
  meeting: null, // the stored meeting on screen: {id, title, created_at, duration, source}
};

export function setState(next) {
  page.state = next;
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

export function updateTitle() {
  const base = "Meeting notes";
  document.title = page.state === "recording" ? `● ${ui.clock.textContent} Recording – ${base}` : base;
}

export function say(text) {
  ui.status.textContent = text;
}

export function showNotice(text, kind = "error") {
  ui.notice.textContent = text;
  ui.notice.dataset.kind = kind;
  ui.notice.hidden = !text;
}

export function toast(text) {
  ui.toast.textContent = text;
  ui.toast.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => ui.toast.classList.remove("show"), 2200);
}

export function markStage(status) {
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

export function clearStages() {
  for (const li of ui.stages.children) li.className = "";
}
