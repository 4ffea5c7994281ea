// The live transcript: turns with speaker labels and times, tentative text set
// apart, follow-the-end scrolling that pauses while the reader scrolls back.
//
// Accessibility: #transcript is a polite live log that announces additions
// only. Tentative text is aria-hidden and edited in place (never announced);
// when a segment is committed its node is replaced, so the final words of each
// segment are read once.

import { clock, groupTurns, speakerName, spoken } from "./format.js";

const PALETTE_SIZE = 8;
const NEAR_BOTTOM_PX = 48;

export class TranscriptView {
  /**
   * @param {HTMLElement} root       #transcript (scrollable)
   * @param {HTMLElement} jumpButton shown while following is paused
   * @param {(raw: string) => void} onRename  a speaker label was activated
   */
  constructor(root, jumpButton, onRename) {
    this.root = root;
    this.jump = jumpButton;
    this.onRename = onRename;
    this.names = {};
    this.colours = new Map();
    this.spans = new Map(); // segment key -> span
    this.turnEls = []; // rendered turn elements, in order
    this.follow = true;
    root.addEventListener("scroll", () => this.onScroll(), { passive: true });
    jumpButton.addEventListener("click", () => {
      this.follow = true;
      this.scrollToEnd();
      this.root.focus({ preventScroll: true });
    });
    root.addEventListener("click", (e) => {
      const label = e.target.closest("button.speaker");
      if (label) this.onRename(label.dataset.speaker);
    });
  }

  clear() {
    this.root.replaceChildren();
    this.spans.clear();
    this.turnEls = [];
    this.colours.clear();
    this.follow = true;
    this.jump.hidden = true;
  }

  /** Colour slot of a speaker, stable in order of first appearance. */
  colour(raw) {
    if (raw == null) return null;
    if (!this.colours.has(raw)) this.colours.set(raw, this.colours.size % PALETTE_SIZE);
    return this.colours.get(raw);
  }

  displayName(raw) {
    return this.names[raw] || speakerName(raw);
  }

  setNames(names) {
    this.names = names;
    for (const label of this.root.querySelectorAll("button.speaker")) {
      label.textContent = this.displayName(label.dataset.speaker);
    }
  }

  /** Bring the DOM in line with `segments`, reusing nodes where possible. */
  render(segments) {
    const turns = groupTurns(spoken(segments));
    const live = new Set();
    turns.forEach((turn, i) => {
      let el = this.turnEls[i];
      if (!el || el.dataset.speaker !== String(turn.speaker ?? "")) {
        const fresh = this.turnElement(turn);
        if (el) el.replaceWith(fresh);
        else this.root.append(fresh);
        el = fresh;
        this.turnEls[i] = el;
      }
      const time = el.querySelector("time");
      if (time.dataset.t !== String(turn.start)) {
        time.dataset.t = String(turn.start);
        time.textContent = clock(turn.start);
        time.dateTime = `PT${Math.floor(turn.start)}S`;
      }
      const para = el.querySelector("p");
      turn.segments.forEach((seg, j) => {
        live.add(seg.key);
        const span = this.segmentSpan(seg);
        if (para.children[j] !== span) para.insertBefore(span, para.children[j] || null);
      });
      while (para.children.length > turn.segments.length) para.lastElementChild.remove();
    });
    for (const el of this.turnEls.splice(turns.length)) el.remove();
    for (const key of [...this.spans.keys()]) if (!live.has(key)) this.spans.delete(key);
    if (this.follow) this.scrollToEnd();
    else this.jump.hidden = false;
  }

  /** Replace everything at once (the final transcript) without re-announcing it. */
  replaceAll(segments) {
    this.root.setAttribute("aria-live", "off");
    const keepFollow = this.follow;
    this.root.replaceChildren();
    this.spans.clear();
    this.turnEls = [];
    this.render(segments);
    this.follow = keepFollow;
    // Let assistive tech settle on the new content before listening again.
    setTimeout(() => this.root.setAttribute("aria-live", "polite"), 0);
  }

  turnElement(turn) {
    const el = document.createElement("article");
    el.className = "turn";
    el.dataset.speaker = String(turn.speaker ?? "");
    const head = document.createElement("header");
    if (turn.speaker != null) {
      const slot = this.colour(turn.speaker);
      el.style.setProperty("--spk", `var(--spk-${slot})`);
      const label = document.createElement("button");
      label.type = "button";
      label.className = "speaker";
      label.dataset.speaker = turn.speaker;
      label.title = "Rename this speaker";
      label.textContent = this.displayName(turn.speaker);
      head.append(label);
    } else {
      el.classList.add("unlabelled");
    }
    const time = document.createElement("time");
    head.append(time);
    el.append(head, document.createElement("p"));
    return el;
  }

  segmentSpan(seg) {
    let span = this.spans.get(seg.key);
    const wasTentative = span && span.classList.contains("tentative");
    if (!span || (wasTentative && seg.committed)) {
      const fresh = document.createElement("span");
      fresh.className = "seg";
      if (span) span.replaceWith(fresh);
      span = fresh;
      this.spans.set(seg.key, span);
    }
    const text = seg.text.trim() + " ";
    if (span.textContent !== text) span.textContent = text;
    span.classList.toggle("tentative", !seg.committed);
    if (seg.committed) span.removeAttribute("aria-hidden");
    else span.setAttribute("aria-hidden", "true");
    span.dataset.start = String(seg.start);
    return span;
  }

  onScroll() {
    const r = this.root;
    const atEnd = r.scrollHeight - r.scrollTop - r.clientHeight <= NEAR_BOTTOM_PX;
    this.follow = atEnd;
    if (atEnd) this.jump.hidden = true;
  }

  scrollToEnd() {
    this.root.scrollTop = this.root.scrollHeight;
    this.jump.hidden = true;
  }

  /** Scroll to the turn holding time `t` (seconds) and flash it. */
  reveal(t) {
    let best = null;
    for (const span of this.spans.values()) {
      const start = Number(span.dataset.start);
      if (start <= t + 0.01 && (!best || start > Number(best.dataset.start))) best = span;
    }
    const target = (best || this.root.querySelector(".seg"))?.closest(".turn");
    if (!target) return;
    this.follow = false;
    target.scrollIntoView({ block: "center" });
    target.classList.remove("flash");
    void target.offsetWidth;
    target.classList.add("flash");
  }
}
