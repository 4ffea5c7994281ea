// The bar above the panes for a stored meeting (#meeting): its title (rename),
// speakers (rename), the server's exports, delete.

import { exportUrl } from "./api.js";
import { clock, speakerName } from "./format.js";
import { when } from "./meetings-view.js";

const FORMATS = [
  ["txt", "Text"],
  ["md", "Markdown"],
  ["json", "JSON"],
  ["srt", "SRT"],
  ["vtt", "WebVTT"],
];

export class MeetingBar {
  /**
   * @param {object} opts {root, onRenameTitle(), onRenameSpeaker(raw), onDelete()}
   */
  constructor({ root, onRenameTitle, onRenameSpeaker, onDelete }) {
    this.root = root;
    this.title = root.querySelector("#meeting-title");
    this.meta = root.querySelector("#meeting-meta");
    this.speakers = root.querySelector("#meeting-speakers");
    this.exports = root.querySelector("#meeting-exports");
    root.querySelector("#meeting-rename").addEventListener("click", () => onRenameTitle());
    root.querySelector("#meeting-delete").addEventListener("click", () => onDelete());
    this.speakers.addEventListener("click", (e) => {
      const chip = e.target.closest("button[data-speaker]");
      if (chip) onRenameSpeaker(chip.dataset.speaker);
    });
  }

  hide() {
    this.root.hidden = true;
  }

  /** Show `meeting` (id, title, created_at, duration, source) with speaker `names` (label -> shown). */
  show(meeting, names) {
    this.root.hidden = false;
    this.root.dataset.id = meeting.id;
    this.title.textContent = meeting.title || "Untitled meeting";
    const bits = [when(meeting.created_at)];
    if (meeting.duration) bits.push(clock(meeting.duration));
    if (meeting.source === "upload") bits.push("uploaded");
    this.meta.textContent = bits.filter(Boolean).join(" · ");
    this.setNames(names);
    this.exports.replaceChildren(
      ...FORMATS.map(([fmt, label]) => {
        const a = document.createElement("a");
        a.href = exportUrl(meeting.id, fmt);
        a.dataset.format = fmt;
        a.download = "";
        a.textContent = label;
        return a;
      }),
    );
  }

  setNames(names) {
    this.speakers.replaceChildren(
      ...Object.keys(names).map((raw) => {
        const chip = document.createElement("button");
        chip.type = "button";
        chip.className = "speaker-chip";
        chip.dataset.speaker = raw;
        chip.title = "Rename this speaker";
        chip.textContent = names[raw] || speakerName(raw);
        return chip;
      }),
    );
  }
}
