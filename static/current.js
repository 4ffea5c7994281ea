// What this tab must remember across a reload (sessionStorage: per tab, gone when the tab
// closes): the meeting on screen and whether it was still recording, and the access token.

const CURRENT = "meeting-assistant.current";
const TOKEN = "meeting-assistant.token";

/** Remember the meeting on screen: `phase` "recording" (the server may hold it for a resume) or "done". */
export function remember(id, phase) {
  try {
    sessionStorage.setItem(CURRENT, JSON.stringify({ id, phase }));
  } catch {
    // storage disabled (private mode quotas): a reload then starts afresh
  }
}

/** {id, phase} or null. */
export function recall() {
  try {
    const found = JSON.parse(sessionStorage.getItem(CURRENT) || "null");
    return found && typeof found.id === "string" ? found : null;
  } catch {
    return null;
  }
}

export function forget() {
  try {
    sessionStorage.removeItem(CURRENT);
  } catch {
    // nothing kept
  }
}

/**
 * The access token from the page link: `#token=…` (a fragment never reaches the server) or the
 * older `?token=…`. It is then removed from the address bar and history, and kept in this tab's
 * sessionStorage so a reload still has it. The socket carries it in a subprotocol (session.js),
 * fetches in `Authorization`, never in the page's URL.
 */
export function takeToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const found = hash.get("token") || query.get("token");
  if (found) {
    hash.delete("token");
    query.delete("token");
    const search = query.toString() ? `?${query}` : "";
    const fragment = hash.toString() ? `#${hash}` : "";
    history.replaceState(history.state, "", `${location.pathname}${search}${fragment}`);
  }
  try {
    if (found) sessionStorage.setItem(TOKEN, found);
    return found || sessionStorage.getItem(TOKEN);
  } catch {
    return found;
  }
}
