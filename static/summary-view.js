// The result panel: summary, action items, decisions, topics, open questions.

import { clock } from "./format.js";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null && c !== false) node.append(c);
  return node;
}

function section(title, body) {
  return el("section", { class: "result-block" }, el("h3", {}, title), body);
}

function list(items, render, ordered = false) {
  return el(ordered ? "ol" : "ul", {}, ...items.map((item) => el("li", {}, ...render(item))));
}

/**
 * Fill `root` (#summary) from the `final` message.
 * @param {object} opts {summary, provider, errors, resumedAt, nameOf(raw), onTime(t)}
 */
export function renderSummary(root, { summary, provider, errors, resumedAt, nameOf, onTime }) {
  root.replaceChildren();
  const s = summary || {};
  const blocks = [];

  if (resumedAt > 0) {
    blocks.push(
      el(
        "p",
        { class: "note" },
        `The connection dropped during the meeting, so the summary covers the audio from ${clock(resumedAt)} on. ` +
          "The transcript below is complete.",
      ),
    );
  }

  const text = (s.summary || "").trim();
  blocks.push(section("Summary", text ? el("p", { class: "summary-text" }, text) : el("p", { class: "muted" }, "No summary was produced.")));

  const actions = s.action_items || [];
  if (actions.length) {
    blocks.push(
      section(
        "Action items",
        list(actions, (a) => {
          const meta = [];
          if (a.owner) meta.push(el("span", { class: "chip owner" }, nameOf(a.owner)));
          if (a.due) meta.push(el("span", { class: "chip due" }, `due ${a.due}`));
          if (typeof a.time === "number") {
            const jump = el("button", { type: "button", class: "chip time", title: "Show in transcript" }, clock(a.time));
            jump.addEventListener("click", () => onTime(a.time));
            meta.push(jump);
          }
          return [el("span", { class: "item-text" }, a.text || ""), meta.length ? el("span", { class: "meta" }, ...meta) : null];
        }),
      ),
    );
  } else {
    blocks.push(section("Action items", el("p", { class: "muted" }, "None noted.")));
  }

  const decisions = s.decisions || [];
  blocks.push(section("Decisions", decisions.length ? list(decisions, (d) => [String(d)]) : el("p", { class: "muted" }, "None noted.")));
  if (s.topics && s.topics.length) blocks.push(section("Topics", list(s.topics, (t) => [String(t)])));
  if (s.open_questions && s.open_questions.length) {
    blocks.push(section("Open questions", list(s.open_questions, (q) => [String(q)])));
  }

  const foot = [];
  if (provider) foot.push(`Summary by ${provider}.`);
  if (errors && errors.length) foot.push(`Some steps had trouble: ${errors.join("; ")}.`);
  if (foot.length) blocks.push(el("p", { class: "provenance" }, foot.join(" ")));

  root.append(...blocks);
}
