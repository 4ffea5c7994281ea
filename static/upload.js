// Uploading a recording: a file dropped anywhere on the page, or chosen with
// the Upload button, goes to POST /api/meetings. What happens after the 202
// (queued -> processing -> done) is the meetings list's polling.

import { uploadRecording } from "./api.js";

const TOO_BIG = 413;
const NOT_AUDIO = 415;

function explain(err, name) {
  if (err.status === TOO_BIG) return `“${name}” is too large for this server. ${err.message}`;
  if (err.status === NOT_AUDIO) return `“${name}” is not a recording this server can read (${err.message}).`;
  if (err.status === 401) return "The server needs its access key: open the page with the link you were given (…#token=…).";
  return `“${name}” could not be uploaded: ${err.message}`;
}

/**
 * @param {object} opts {button, input, overlay, say(text, kind), onAccepted({id, status}, file)}
 */
export function setupUpload({ button, input, overlay, say, onAccepted }) {
  let depth = 0; // dragenter/dragleave fire for every child element

  async function send(file) {
    if (!file) return;
    say(`Uploading “${file.name}”…`, "info");
    try {
      const accepted = await uploadRecording(file, {
        onProgress: (f) => say(`Uploading “${file.name}”… ${Math.round(f * 100)} %`, "info"),
      });
      say(`“${file.name}” is uploaded and waiting for the transcriber.`, "info");
      onAccepted(accepted, file);
    } catch (err) {
      say(explain(err, file.name), "error");
    }
  }

  button.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const file = input.files[0];
    input.value = ""; // the same file may be chosen again
    send(file);
  });

  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes("Files");
  window.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth += 1;
    overlay.hidden = false;
  });
  window.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault(); // otherwise the browser opens the file and leaves the page
    depth = 0;
    overlay.hidden = true;
    send(e.dataTransfer.files[0]);
  });
  return { send };
}
