// The stored-meetings API (/api/meetings…) as the page uses it.
//
// With API_KEY set, fetches carry `Authorization: Bearer <token>`; download links carry
// `?token=` (a plain link cannot set headers; the server accepts both).

let token = null;

/** The access token every later call uses (null: none configured). */
export function setToken(value) {
  token = value || null;
}

/** An API error with the server's explanation (`detail`) in its message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

async function explain(res) {
  let detail = "";
  try {
    const body = await res.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
  } catch {
    detail = res.statusText;
  }
  return new ApiError(res.status, detail || `HTTP ${res.status}`);
}

export function authHeaders(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function call(method, path, body) {
  const init = { method, headers: authHeaders(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `The server could not be reached (${err.message || err}).`);
  }
  if (!res.ok) throw await explain(res);
  return res.status === 204 ? null : res.json();
}

const one = (id) => `/api/meetings/${encodeURIComponent(id)}`;

export const listMeetings = (before = null, limit = 20) =>
  call("GET", `/api/meetings?limit=${limit}${before ? `&before=${encodeURIComponent(before)}` : ""}`);
export const getMeeting = (id) => call("GET", one(id));
export const patchMeeting = (id, patch) => call("PATCH", one(id), patch);
export const deleteMeeting = (id) => call("DELETE", one(id));

/** A download link of the server's export (`fmt`: txt, md, json, srt, vtt). */
export function exportUrl(id, fmt) {
  const url = `${one(id)}/transcript.${fmt}`;
  return token ? `${url}?token=${encodeURIComponent(token)}` : url;
}

/**
 * POST /api/meetings with a recording; `onProgress(fraction)` while the bytes go up.
 * Resolves with the 202 body {id, status}. XMLHttpRequest, because fetch reports no upload progress.
 */
export function uploadRecording(file, { title = null, onProgress = () => {} } = {}) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    if (title) form.append("title", title);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/meetings");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "The upload was interrupted: the server could not be reached."));
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText || "{}");
      } catch {
        body = {};
      }
      if (xhr.status === 202) return resolve(body);
      const detail = typeof body.detail === "string" ? body.detail : xhr.statusText;
      reject(new ApiError(xhr.status, detail || `HTTP ${xhr.status}`));
    };
    xhr.send(form);
  });
}
