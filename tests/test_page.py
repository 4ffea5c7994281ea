"""The recording page in a real browser: Chromium (Debian's, or Playwright's own on Ubuntu) driven by Playwright.

A fake microphone plays tests/fixtures/meeting_two_voices.wav (Chromium loops the file) into
the page served by the real app (`live_server`). Screenshots go to test-output/.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Response,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from tests.support import make_settings, run_server

ROOT = Path(__file__).resolve().parent.parent
RECORDING = ROOT / "tests" / "fixtures" / "meeting_two_voices.wav"
OUT = ROOT / "test-output"


def _system_chromium() -> str | None:
    """Debian's Chromium (or $CHROMIUM). None where /usr/bin/chromium only starts a snap (Ubuntu),
    which Playwright cannot drive: Playwright's own build is used then (`make test` installs it)."""
    path = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    if not path.is_file():
        return None
    head = path.read_bytes()[:8192]
    return None if head.startswith(b"#!") and b"snap" in head else str(path)


CHROMIUM = _system_chromium()
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAKE_MIC = ["--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={RECORDING}"]
ALLOW_MIC = "--use-fake-ui-for-media-stream"


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


def launch(pw: Playwright, *args: str) -> Browser:
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*BASE_ARGS, *args])


@pytest.fixture(scope="module")
def browser(pw: Playwright) -> Iterator[Browser]:
    """Chromium with a granted fake microphone playing the two-voice meeting."""
    b = launch(pw, *FAKE_MIC, ALLOW_MIC)
    yield b
    b.close()


class Watch:
    """Collects console errors, page errors and failed requests of one page."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.problems.append(f"console error: {msg.text}")

    def _failed(self, request: Request) -> None:
        # A download's blob: URL is "aborted" once saved; that is not a failed request.
        if not request.url.startswith("blob:"):
            self.problems.append(f"request failed: {request.url} {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")


def transcript_text(page: Page) -> str:
    return page.locator("#transcript").inner_text()


def wait_for_words(page: Page, *words: str, timeout: float) -> float:
    """Wait until the live transcript holds all `words` (case-insensitive); return the wait."""
    return _wait_for_segments(page, "#transcript", words, timeout)


def wait_for_committed_words(page: Page, *words: str, timeout: float) -> float:
    """Wait until the committed (not tentative) transcript holds all `words`; return the wait."""
    return _wait_for_segments(page, "#transcript .seg:not(.tentative)", words, timeout)


def _wait_for_segments(page: Page, selector: str, words: tuple[str, ...], timeout: float) -> float:
    began = time.monotonic()
    page.wait_for_function(
        "([selector, words]) => { const t = [...document.querySelectorAll(selector)]"
        ".map(e => e.textContent).join(' ').toLowerCase(); return words.every(w => t.includes(w)); }",
        arg=[selector, [w.lower() for w in words]],
        timeout=timeout * 1000,
    )
    return time.monotonic() - began


# Every text #notice and #status show, kept in the page: a notice such as "reconnecting in 1 s…"
# may last a quarter of a second, shorter than expect()'s polling interval.
_KEEP_SHOWN = """
window.__shown = { notice: [], status: [] };
document.addEventListener("DOMContentLoaded", () => {
  for (const id of Object.keys(window.__shown)) {
    const element = document.getElementById(id);
    new MutationObserver(() => window.__shown[id].push(element.textContent)).observe(element, {
      childList: true, characterData: true, subtree: true,
    });
  }
});
"""


def keep_shown(page: Page) -> None:
    """Record every text of #notice and #status from the next navigation on (call before `page.goto`)."""
    page.add_init_script(_KEEP_SHOWN)


def wait_for_shown(page: Page, element: str, text: str, timeout: float) -> None:
    """Wait until `element` ("notice" or "status") has shown `text` (case-insensitive), however briefly."""
    page.wait_for_function(
        "([id, text]) => window.__shown[id].some(shown => shown.toLowerCase().includes(text))",
        arg=[element, text.lower()],
        timeout=timeout * 1000,
    )


def stop_twice(page: Page) -> None:
    """Press Stop, and at once again: the second press must be harmless."""
    page.evaluate("() => { const b = document.querySelector('#record'); b.click(); b.click(); }")


def test_record_shows_live_words_then_the_summary(browser: Browser, live_server: str) -> None:
    OUT.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light")
    page = context.new_page()
    watch = Watch(page)
    page.goto(live_server + "/")
    for selector in ("button#record", "#transcript", "#status", "#summary"):
        expect(page.locator(selector)).to_have_count(1)

    page.click("#record")
    expect(page.locator("#record")).to_have_attribute("aria-pressed", "true", timeout=10_000)
    first = wait_for_words(page, "morning", timeout=15)  # the opening words, as drafted
    assert first < 15, f"first live words took {first:.1f} s"
    # Keep recording while the rest of the meeting plays: words arrive before stop.
    wait_for_words(page, "website", "budget", "friday", timeout=45)
    # Stop once that sentence is committed: a stop that cuts it off leaves its words to the stop's
    # careful pass over a clipped utterance, which may hear them differently.
    wait_for_committed_words(page, "friday", timeout=45)
    expect(page.locator("#transcript .turn").first).to_be_visible()
    assert page.locator("#clock").inner_text() != "00:00"
    page.screenshot(path=str(OUT / "page_live_light.png"))

    stop_twice(page)
    expect(page.locator("#summary")).not_to_be_empty(timeout=120_000)
    expect(page.locator("#status")).to_contain_text("Done")
    expect(page.locator("#record")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#summary")).to_contain_text("Summary")
    expect(page.locator("#summary")).to_contain_text("Action items")
    expect(page.locator("#summary")).to_contain_text("Decisions")
    final = transcript_text(page).lower()
    assert "budget" in final and "friday" in final, final
    assert page.locator("#transcript .seg.tentative").count() == 0
    assert page.locator("#transcript button.speaker").count() >= 1, "speaker labels shown"
    page.screenshot(path=str(OUT / "page_final_light.png"), full_page=True)

    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(OUT / "page_final_dark_phone.png"), full_page=True)
    assert watch.problems == []
    context.close()


def test_export_buttons_download_the_transcript(browser: Browser, live_server: str) -> None:
    context = browser.new_context(accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page = context.new_page()
    watch = Watch(page)
    page.goto(live_server + "/")
    expect(page.locator("#download-srt")).to_be_disabled()
    page.fill("#title", "Launch sync")
    page.click("#record")
    wait_for_words(page, "morning", timeout=20)
    page.click("#record")
    expect(page.locator("#summary")).not_to_be_empty(timeout=120_000)
    words = re.findall(r"[a-z]{5,}", transcript_text(page).lower())
    assert words

    files: dict[str, str] = {}
    buttons = {"md": "#download-md", "json": "#download-json", "srt": "#download-srt", "vtt": "#download-vtt"}
    for ext, button in buttons.items():
        with page.expect_download() as info:
            page.click(button)
        download = info.value
        name = download.suggested_filename
        assert name.startswith("launch-sync-") and name.endswith(f".{ext}"), name
        files[ext] = Path(download.path()).read_text(encoding="utf-8")
        for word in words:
            assert word in files[ext].lower(), f"{word!r} missing from the {ext} export"

    assert files["md"].startswith("# Launch sync")
    assert "## Summary" in files["md"] and "## Transcript" in files["md"]
    doc: dict[str, Any] = json.loads(files["json"])
    assert doc["title"] == "Launch sync" and doc["segments"] and doc["summary"]["summary"]
    assert re.search(r"^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n", files["srt"], re.M)
    assert files["vtt"].startswith("WEBVTT\n")
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}", files["vtt"])

    page.click("#copy")
    expect(page.locator("#toast")).to_contain_text("copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert words[0] in copied.lower()
    assert watch.problems == []
    context.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([*FAKE_MIC], "Microphone access is blocked", id="denied"),
        pytest.param([ALLOW_MIC], "No microphone was found", id="missing"),
    ],
)
def test_microphone_problem_is_explained(pw: Playwright, live_server: str, args: list[str], message: str) -> None:
    # Without --use-fake-ui-for-media-stream, headless Chromium denies the permission prompt;
    # without the fake device there is no microphone at all.
    b = launch(pw, *args)
    page = b.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(live_server + "/")
    page.click("#record")
    expect(page.locator("#status")).to_contain_text(message, timeout=10_000)
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text(message)
    expect(page.locator("#record")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#record")).to_contain_text("Record")
    assert sockets == [], "no session is opened without a microphone"
    b.close()


def test_dropped_connection_falls_back_to_a_new_session(browser: Browser, live_server: str) -> None:
    """The first socket goes away mid-meeting and `live_server` (RESUME_GRACE_SECONDS=0) finishes its
    recording at once, so the page's resume gets `unknown_session`: it says so and carries on in a
    new session fed from the last committed segment (the resume itself: tests/test_page_meetings.py)."""
    context = browser.new_context()
    page = context.new_page()
    connections: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        connections.append(ws)
        server = ws.connect_to_server()
        first = len(connections) == 1

        def to_page(message: str | bytes) -> None:
            ws.send(message)
            if first and isinstance(message, str) and '"committed": true' in message.replace('":true', '": true'):
                ws.close(code=1012, reason="restarting")
                server.close()

        server.on_message(to_page)

    page.route_web_socket(re.compile(r".*/ws(\?.*)?$"), route)
    keep_shown(page)
    page.goto(live_server + "/")
    page.click("#record")
    wait_for_shown(page, "notice", "reconnecting", timeout=30)
    kept = transcript_text(page)
    assert kept.strip(), "committed text stays on screen"
    wait_for_shown(page, "status", "no longer had this recording", timeout=15)
    wait_for_shown(page, "notice", "new session", timeout=5)
    assert len(connections) == 2
    wait_for_committed_words(page, "budget", timeout=60)  # as in test_record_shows_live_words_then_the_summary
    page.click("#record")
    expect(page.locator("#summary")).not_to_be_empty(timeout=120_000)
    expect(page.locator("#summary")).to_contain_text("connection dropped")
    final = transcript_text(page)
    assert "morning" in kept.lower(), "the first committed sentence was on screen before the drop"
    assert "morning" in final.lower() and "budget" in final.lower()
    context.close()


def test_format_module(browser: Browser, live_server: str) -> None:
    """static/format.js, imported by the browser itself: merge and the subtitle builders."""
    page = browser.new_page()
    page.goto(live_server + "/")
    out = page.evaluate(
        """async () => {
          const f = await import('/static/format.js');
          let segs = [];
          const seg = (key, start, end, text, speaker, committed) => ({key, start, end, text, speaker, committed});
          segs = f.upsertSegment(segs, seg('0:1', 3.5, 5, 'second', null, false));
          segs = f.upsertSegment(segs, seg('0:0', 0.25, 3.25, 'Hello <team>', 'SPEAKER_07', true));
          segs = f.upsertSegment(segs, seg('0:1', 3.5, 61.002, 'Second part', 'SPEAKER_02', true));
          const names = f.displayNames(segs, {});
          return {
            order: segs.map(s => s.text), names,
            srt: f.toSRT(segs, names), vtt: f.toVTT(segs, names),
            md: f.toMarkdown({title: 'T', segments: segs, names, summary: {
              summary: 'S', action_items: [{text: 'Do it', owner: 'SPEAKER_02', due: 'Friday'}], decisions: ['D'],
            }}),
            relabelled: f.relabelSummary({
              summary: 'SPEAKER_02 agreed', action_items: [{text: 'x', owner: 'SPEAKER_02'}], decisions: [],
            }, names),
            clock: [f.clock(75.4), f.clock(3725)],
          };
        }"""
    )
    assert out["order"] == ["Hello <team>", "Second part"]
    assert out["names"] == {"SPEAKER_07": "Speaker 1", "SPEAKER_02": "Speaker 2"}
    assert out["srt"] == (
        "1\n00:00:00,250 --> 00:00:03,250\nSpeaker 1: Hello <team>\n\n"
        "2\n00:00:03,500 --> 00:01:01,002\nSpeaker 2: Second part\n"
    )
    assert out["vtt"] == (
        "WEBVTT\n\n1\n00:00:00.250 --> 00:00:03.250\n<v Speaker 1>Hello &lt;team&gt;\n\n"
        "2\n00:00:03.500 --> 00:01:01.002\n<v Speaker 2>Second part\n"
    )
    assert "- [ ] Do it (**Speaker 2**, due Friday)" in out["md"]
    assert "**Speaker 1** [00:00]\n\nHello <team>" in out["md"]
    assert out["relabelled"]["summary"] == "Speaker 2 agreed"
    assert out["relabelled"]["action_items"][0]["owner"] == "Speaker 2"
    assert out["clock"] == ["01:15", "1:02:05"]
    page.close()


@pytest.mark.parametrize("link", ["/#token=", "/?token="])
def test_access_token_never_travels_in_a_url(browser: Browser, tmp_path: Path, link: str) -> None:
    """With API_KEY set, the page takes the token from its link, drops it from the address bar and
    sends it in the socket's subprotocol: no WebSocket URL carries it."""
    token = "page/Token+1="
    with run_server(make_settings(tmp_path, api_key=token)) as base_url:
        context = browser.new_context()
        page = context.new_page()
        watch = Watch(page)
        sockets: list[str] = []
        requests: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{base_url}{link}{quote(token, safe='')}")
        assert "token" not in page.url
        page.click("#record")
        wait_for_words(page, "morning", timeout=30)  # admitted: live words arrive
        assert sockets and all(url == base_url.replace("http", "ws") + "/ws" for url in sockets)
        # The meetings list is fetched with the token in a header (no 401), also after a reload.
        expect(page.locator("#meetings-empty")).to_be_visible()
        page.on("dialog", lambda dialog: dialog.accept())
        page.reload()  # this server finishes a dropped recording at once: the page shows it from the store
        expect(page.locator("#meeting")).to_be_visible(timeout=60_000)
        expect(page.locator("#transcript .turn").first).to_be_visible()
        expect(page.locator(f"#meeting-list li[data-id='{page.get_attribute('#meeting', 'data-id')}']")).to_be_visible()
        expect(page.locator("#meetings-problem")).to_be_hidden()
        later = requests[1:]  # the first is the link itself
        assert later and not [url for url in later if "token" in url], "no request URL after the link holds the token"
        assert watch.problems == []
        context.close()
