// The list of stored meetings (#meetings): newest first, paged with `next`, and
// watched while any of them is still queued or processing (uploads, meetings
// finishing after their page closed).

import { getMeeting, listMeetings } from "./api.js";
import { clock } from "./format.js";

const POLL_MS = 1500;
const BADGE = { recording: "Recording", queued: "Queued", processing: "Processing…", failed: "Failed", recovered: "Recovered" };
const PENDING = new Set(["queued", "processing"]);

/** "25 Nov 2026, 14:03" in the reader's locale and time zone. */
export function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export class MeetingsPanel {
  /**
   * @param {object} opts {list, more, empty, problem, onOpen(id), onChange(meeting)}
   *   onChange is called with each watched meeting as it is polled (the full meeting).
   */
  constructor({ list, more, empty, problem, onOpen, onChange }) {
    Object.assign(this, { list, more, empty, problem, onOpen, onChange });
    this.items = new Map(); // id -> li
    this.next = null;
    this.watched = new Set();
    this.pollTimer = null;
    this.current = null;
    more.addEventListener("click", () => this.load(this.next));
    list.addEventListener("click", (e) => {
      const open = e.target.closest("button.open");
      if (open) this.onOpen(open.closest("li").dataset.id);
    });
  }

  /** Load the first page again (or the page after `before`). */
  async load(before = null) {
    let page;
    try {
      page = await listMeetings(before);
    } catch (err) {
      this.say(`The meeting list could not be loaded: ${err.message}`);
      return;
    }
    this.say("");
    if (!before) {
      for (const li of this.items.values()) li.remove();
      this.items.clear();
    }
    for (const m of page.meetings) this.put(m, { append: true });
    this.next = page.next;
    this.more.hidden = !page.next;
    this.empty.hidden = this.items.size > 0;
  }

  say(text) {
    this.problem.textContent = text;
    this.problem.hidden = !text;
  }

  /** Show or update one meeting (a list item, or a whole meeting from GET). */
  put(m, { append = false } = {}) {
    let li = this.items.get(m.id);
    if (!li) {
      li = document.createElement("li");
      li.className = "meeting-item";
      li.dataset.id = m.id;
      this.items.set(m.id, li);
      if (append) this.list.append(li);
      else this.list.prepend(li);
    }
    li.dataset.status = m.status;
    li.classList.toggle("current", m.id === this.current);
    const bits = [when(m.created_at)];
    if (m.duration) bits.push(clock(m.duration));
    const speakers = Object.keys(m.speakers || {}).length;
    if (speakers) bits.push(`${speakers} speaker${speakers === 1 ? "" : "s"}`);
    if (m.source === "upload") bits.push("uploaded");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    const title = document.createElement("span");
    title.className = "m-title";
    title.textContent = m.title || "Untitled meeting";
    const meta = document.createElement("span");
    meta.className = "m-meta";
    meta.textContent = bits.filter(Boolean).join(" · ");
    open.append(title, meta);
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = BADGE[m.status] || "";
    badge.hidden = !badge.textContent;
    li.replaceChildren(open, badge);
    this.empty.hidden = true;
    if (PENDING.has(m.status)) this.watch(m.id);
  }

  remove(id) {
    this.items.get(id)?.remove();
    this.items.delete(id);
    this.watched.delete(id);
    this.empty.hidden = this.items.size > 0;
  }

  /** Highlight the meeting shown in the panes. */
  markCurrent(id) {
    this.current = id;
    for (const [key, li] of this.items) li.classList.toggle("current", key === id);
  }

  /** Poll `id` until it is no longer queued or processing. */
  watch(id) {
    this.watched.add(id);
    if (!this.pollTimer) this.pollTimer = setTimeout(() => this.poll(), POLL_MS);
  }

  async poll() {
    this.pollTimer = null;
    for (const id of [...this.watched]) {
      let m;
      try {
        m = await getMeeting(id);
      } catch (err) {
        if (err.status === 404) {
          this.remove(id);
          continue;
        }
        break; // the server is away for a moment: try again later
      }
      if (!PENDING.has(m.status)) this.watched.delete(id);
      if (this.items.has(id)) this.put(m);
      this.onChange(m);
    }
    if (this.watched.size) this.pollTimer = setTimeout(() => this.poll(), POLL_MS);
  }
}
