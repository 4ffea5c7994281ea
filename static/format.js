// Pure transcript logic: segment merging, speaker names, time formats and the
// export builders (plain text, Markdown, JSON, SRT, WebVTT). No DOM, no I/O,
// so it can be read and tested on its own.

/**
 * Insert or replace one segment in a list ordered by start time.
 * A segment is {key, start, end, text, speaker, committed}; `key` identifies it
 * (the server's segment_id, namespaced per connection). Returns a new list.
 */
export function upsertSegment(segments, seg) {
  const out = segments.filter((s) => s.key !== seg.key);
  let i = out.length;
  while (i > 0 && out[i - 1].start > seg.start) i -= 1;
  out.splice(i, 0, seg);
  return out;
}

/** Segments that carry text, in time order. */
export function spoken(segments) {
  return segments.filter((s) => s.text && s.text.trim());
}

/**
 * Group consecutive segments of the same speaker into turns:
 * [{speaker, start, end, segments: [...]}]. Unlabelled segments (labels often
 * arrive after the words) form their own turns rather than being credited to
 * whoever spoke before.
 */
export function groupTurns(segments) {
  const turns = [];
  for (const seg of segments) {
    const last = turns[turns.length - 1];
    if (last && (seg.speaker ?? null) === last.speaker) {
      last.segments.push(seg);
      last.end = Math.max(last.end, seg.end);
    } else {
      turns.push({ speaker: seg.speaker ?? null, start: seg.start, end: seg.end, segments: [seg] });
    }
  }
  return turns;
}

const GENERIC_LABEL = /^(?:speaker|spk|s)[ _-]?(\d+)$/i;

/** A label on its own: "SPEAKER_01" -> "Speaker 01" (numbering as the server gave it). */
export function speakerName(raw) {
  if (raw == null || raw === "") return "";
  const m = GENERIC_LABEL.exec(String(raw).trim());
  return m ? `Speaker ${m[1]}` : String(raw);
}

/**
 * Display names for every speaker label in `segments`: a name the person chose
 * (`custom`), a real name the server gave, or "Speaker N" numbered in order of
 * first appearance (servers number from 0 or 1, and relabel at the end).
 */
export function displayNames(segments, custom = {}) {
  const names = {};
  let n = 0;
  for (const seg of [...segments].sort((a, b) => a.start - b.start)) {
    const raw = seg.speaker;
    if (raw == null || raw in names) continue;
    names[raw] = GENERIC_LABEL.test(String(raw).trim()) ? `Speaker ${++n}` : String(raw);
  }
  for (const [raw, name] of Object.entries(custom)) if (name) names[raw] = name;
  return names;
}

/** Replace raw speaker labels ("SPEAKER_1") inside free text by display names. */
export function relabel(text, names) {
  if (!text) return text;
  const raws = Object.keys(names).filter((r) => r && names[r] !== r).sort((a, b) => b.length - a.length);
  if (!raws.length) return text;
  const esc = raws.map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return String(text).replace(new RegExp(`\\b(${esc.join("|")})\\b`, "g"), (m) => names[m]);
}

/** The summary with speaker labels in its text replaced by display names. */
export function relabelSummary(summary, names) {
  if (!summary) return summary;
  const r = (t) => (typeof t === "string" ? relabel(t, names) : t);
  return {
    ...summary,
    summary: r(summary.summary),
    action_items: (summary.action_items || []).map((a) => ({ ...a, text: r(a.text), owner: r(a.owner) })),
    decisions: (summary.decisions || []).map(r),
    topics: (summary.topics || []).map(r),
    open_questions: (summary.open_questions || []).map(r),
  };
}

/** 75.4 -> "01:15"; 3725 -> "1:02:05". */
export function clock(seconds) {
  const t = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = t % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(s).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function cueTime(seconds, sep) {
  const ms = Math.max(0, Math.round((seconds || 0) * 1000));
  const h = Math.floor(ms / 3600000);
  const m = Math.floor((ms % 3600000) / 60000);
  const s = Math.floor((ms % 60000) / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(h)}:${pad(m)}:${pad(s)}${sep}${pad(ms % 1000, 3)}`;
}

/** SRT time: "00:01:02,345". */
export const srtTime = (seconds) => cueTime(seconds, ",");
/** WebVTT time: "00:01:02.345". */
export const vttTime = (seconds) => cueTime(seconds, ".");

// Cues must not end before they start; give a zero-length segment a moment on screen.
function cueEnd(seg) {
  return seg.end > seg.start ? seg.end : seg.start + 1;
}

const nameOr = (names, raw) => (raw == null ? "" : names?.[raw] || speakerName(raw));

/** SubRip subtitles, one cue per segment, "Speaker 1: text". */
export function toSRT(segments, names = {}) {
  return spoken(segments)
    .map((seg, i) => {
      const who = nameOr(names, seg.speaker);
      const text = (who ? `${who}: ` : "") + seg.text.trim();
      return `${i + 1}\n${srtTime(seg.start)} --> ${srtTime(cueEnd(seg))}\n${text}\n`;
    })
    .join("\n");
}

const escVtt = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** WebVTT subtitles with <v Speaker> voice spans. */
export function toVTT(segments, names = {}) {
  const cues = spoken(segments).map((seg, i) => {
    const who = nameOr(names, seg.speaker);
    const text = escVtt(seg.text.trim());
    const body = who ? `<v ${escVtt(who)}>${text}` : text;
    return `${i + 1}\n${vttTime(seg.start)} --> ${vttTime(cueEnd(seg))}\n${body}\n`;
  });
  return ["WEBVTT\n", ...cues].join("\n");
}

/** Plain text for the clipboard: "[00:05] Speaker 1: text" per turn. */
export function toPlainText(segments, names = {}) {
  return groupTurns(spoken(segments))
    .map((turn) => {
      const who = nameOr(names, turn.speaker);
      const words = turn.segments.map((s) => s.text.trim()).join(" ");
      return `[${clock(turn.start)}] ${who ? `${who}: ` : ""}${words}`;
    })
    .join("\n\n");
}

function actionLine(item, names) {
  const bits = [];
  if (item.owner) bits.push(`**${nameOr(names, item.owner)}**`);
  if (item.due) bits.push(`due ${item.due}`);
  if (typeof item.time === "number") bits.push(`at ${clock(item.time)}`);
  return `- [ ] ${item.text}${bits.length ? ` (${bits.join(", ")})` : ""}`;
}

/**
 * Meeting notes as Markdown.
 * @param {object} doc {title, recordedAt (Date), duration (s), segments, summary|null, names}
 */
export function toMarkdown({ title, recordedAt, duration, segments, summary, names = {} }) {
  const lines = [`# ${title || "Meeting notes"}`, ""];
  const meta = [];
  if (recordedAt) meta.push(`Recorded ${recordedAt.toLocaleString()}`);
  if (duration) meta.push(`duration ${clock(duration)}`);
  if (meta.length) lines.push(`_${meta.join(", ")}_`, "");
  if (summary) {
    if (summary.summary) lines.push("## Summary", "", summary.summary.trim(), "");
    const list = (heading, items, fmt) => {
      if (items && items.length) lines.push(`## ${heading}`, "", ...items.map(fmt), "");
    };
    list("Action items", summary.action_items, (a) => actionLine(a, names));
    list("Decisions", summary.decisions, (d) => `- ${d}`);
    list("Topics", summary.topics, (t) => `- ${t}`);
    list("Open questions", summary.open_questions, (q) => `- ${q}`);
  }
  lines.push("## Transcript", "");
  for (const turn of groupTurns(spoken(segments))) {
    const who = nameOr(names, turn.speaker) || "Unknown speaker";
    lines.push(`**${who}** [${clock(turn.start)}]`, "");
    lines.push(turn.segments.map((s) => s.text.trim()).join(" "), "");
  }
  return lines.join("\n");
}

/** The whole result as pretty JSON (times in seconds, speakers as displayed). */
export function toJSON({ title, recordedAt, duration, segments, summary, names = {}, sessionId, provider }) {
  const doc = {
    title: title || null,
    recorded_at: recordedAt ? recordedAt.toISOString() : null,
    duration: duration ?? null,
    session_id: sessionId ?? null,
    provider: provider ?? null,
    segments: spoken(segments).map((s) => ({
      start: round3(s.start),
      end: round3(s.end),
      speaker: s.speaker == null ? null : nameOr(names, s.speaker),
      text: s.text.trim(),
    })),
    summary: summary ?? null,
  };
  return JSON.stringify(doc, null, 2) + "\n";
}

const round3 = (x) => Math.round((x || 0) * 1000) / 1000;

/** A file name stem from a title and date: "weekly-sync-2024-03-01-0930". */
export function fileStem(title, date = new Date()) {
  const slug = (title || "meeting")
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[^\w\s-]/g, "")
    .trim()
    .replace(/[\s_-]+/g, "-")
    .slice(0, 60) || "meeting";
  const pad = (n) => String(n).padStart(2, "0");
  const stamp = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}-${pad(date.getHours())}${pad(date.getMinutes())}`;
  return `${slug}-${stamp}`;
}
