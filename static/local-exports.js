// The transcript pane's own exports (copy, Markdown, JSON, SRT, WebVTT, the audio as WAV), built
// in the page from what is on screen, so they work during a recording and without the server.

import { fileStem, toJSON, toMarkdown, toPlainText, toSRT, toVTT } from "./format.js";

const BUTTONS = ["copy", "download-md", "download-json", "download-srt", "download-vtt"];

/**
 * @param {object} opts {doc() -> {title, recordedAt, duration, segments, summary, names, ...},
 *                       audio() -> AudioStore|null, toast(text)}
 */
export function setupLocalExports({ doc, audio, toast }) {
  const $ = (id) => document.getElementById(id);

  function download(text, ext, type) {
    const d = doc();
    const blob = text instanceof Blob ? text : new Blob([text], { type: `${type};charset=utf-8` });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `${fileStem(d.title || "", d.recordedAt)}.${ext}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    toast(`Downloaded ${a.download}`);
  }

  async function copyTranscript() {
    const d = doc();
    const text = toPlainText(d.segments, d.names);
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
  $("download-srt").addEventListener("click", () => download(toSRT(doc().segments, doc().names), "srt", "application/x-subrip"));
  $("download-vtt").addEventListener("click", () => download(toVTT(doc().segments, doc().names), "vtt", "text/vtt"));
  $("download-wav").addEventListener("click", () => audio() && download(audio().toWav(), "wav", "audio/wav"));

  return {
    enable(on) {
      for (const id of BUTTONS) $(id).disabled = !on;
    },
  };
}
