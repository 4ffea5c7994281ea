"""Server-side exports: their shapes, and that they match the page's own exports (static/format.js,
run in real Chromium on the same meeting) so a file reads the same wherever it was made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from services.exports import ExportFormat, clock, cue_time, export_meeting, file_stem, to_markdown
from services.stored_meeting import MeetingSource, MeetingStatus, StoredMeeting

CHROMIUM = "/usr/bin/chromium"
T0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC


def tricky_meeting() -> StoredMeeting:
    """Renamed and unrenamed speakers, a named label, no label, empty text, a zero-length cue, markup."""
    segments = [
        {"start": 0.25, "end": 2.0, "speaker": "SPEAKER_2", "text": " Let's start <now> & fast."},
        {"start": 2.0, "end": 3.5, "speaker": "SPEAKER_2", "text": " Agreed."},
        {"start": 3.5, "end": 3.5, "speaker": "SPEAKER_1", "text": " Yes."},
        {"start": 4.0, "end": 5.0, "speaker": None, "text": " (noise)"},
        {"start": 5.0, "end": 6.0, "speaker": "SPEAKER_1", "text": "   "},
        {"start": 6.25, "end": 3725.5, "speaker": "Guest", "text": " A long one."},
    ]
    return StoredMeeting(
        id="abc123",
        title="Café — Q3 review!",
        status=MeetingStatus.DONE,
        source=MeetingSource.LIVE,
        created_at=T0,
        duration=3726.0,
        speaker_names={"SPEAKER_2": "Alice", "SPEAKER_1": None, "Guest": None},
        segments=segments,
        summary={
            "summary": "SPEAKER_2 and SPEAKER_1 agreed.",
            "action_items": [
                {"text": "SPEAKER_1 sends notes", "owner": "SPEAKER_1", "due": "Friday", "time": 3.5},
                {"text": "Book a room", "owner": None, "due": None, "time": None},
            ],
            "decisions": ["Ship it"],
            "topics": ["budget"],
            "open_questions": [],
        },
        provider="offline",
    )


def test_time_formats() -> None:
    assert (clock(75.4), clock(3725), clock(-3)) == ("01:15", "1:02:05", "00:00")
    assert (cue_time(62.345, ","), cue_time(3725.5, ".")) == ("00:01:02,345", "01:02:05.500")


def test_file_names_are_ascii_slugs_with_the_start_time() -> None:
    assert file_stem("Café — Q3 review!", T0) == "cafe-q3-review-2025-11-24-1600"
    assert file_stem(None, T0) == "meeting-2025-11-24-1600"
    assert file_stem("日本語", T0) == "meeting-2025-11-24-1600", "a title with no ASCII letters still names the file"
    export = export_meeting(tricky_meeting(), ExportFormat.SRT)
    assert export.content_disposition == 'attachment; filename="cafe-q3-review-2025-11-24-1600.srt"'


def test_exports_name_speakers_and_escape_markup() -> None:
    meeting = tricky_meeting()
    text = export_meeting(meeting, ExportFormat.TXT).content
    # numbered in order of appearance, as the page does: SPEAKER_2 spoke first (and is Alice now)
    assert text.startswith("[00:00] Alice: Let's start <now> & fast. Agreed.\n\n[00:03] Speaker 2: Yes.")
    assert "[00:04] (noise)" in text, "no label, no name"
    vtt = export_meeting(meeting, ExportFormat.VTT).content
    assert "<v Alice>Let's start &lt;now&gt; &amp; fast." in vtt
    assert "00:00:03.500 --> 00:00:04.500\n<v Speaker 2>Yes." in vtt, "a zero-length cue gets a second"
    srt = export_meeting(meeting, ExportFormat.SRT).content
    assert srt.count(" --> ") == 5, "the blank segment is no cue"
    markdown = to_markdown(meeting)
    assert "- [ ] Speaker 2 sends notes (**Speaker 2**, due Friday, at 00:03)" in markdown
    assert "Alice and Speaker 2 agreed." in markdown and "_Recorded 2025-11-24 16:00 UTC, duration 1:02:06_" in markdown
    document = json.loads(export_meeting(meeting, ExportFormat.JSON).content)
    assert [s["speaker"] for s in document["segments"]] == ["Alice", "Alice", "Speaker 2", None, "Guest"]


@pytest.fixture(scope="module")
def format_js(live_server: str) -> Iterator[Page]:
    """A Chromium page (UTC) on the app's origin, to import static/format.js."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the export mirror test needs Debian's chromium at {CHROMIUM} (make test installs it)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_context(timezone_id="UTC").new_page()
        page.goto(f"{live_server}/static/format.js")
        yield page
        browser.close()


def page_exports(page: Page, meeting: StoredMeeting) -> dict[str, Any]:
    return page.evaluate(
        """async (m) => {
          const f = await import("/static/format.js");
          const custom = Object.fromEntries(Object.entries(m.speaker_names).filter(([, v]) => v));
          const names = f.displayNames(m.segments, custom);
          const doc = {
            title: m.title, recordedAt: new Date(m.created_at * 1000), duration: m.duration,
            segments: m.segments, summary: f.relabelSummary(m.summary, names), names,
            sessionId: m.id, provider: m.provider,
          };
          return {
            names, txt: f.toPlainText(m.segments, names), md: f.toMarkdown(doc), json: f.toJSON(doc),
            srt: f.toSRT(m.segments, names), vtt: f.toVTT(m.segments, names),
            stem: f.fileStem(m.title, doc.recordedAt),
          };
        }""",
        {
            "title": meeting.title,
            "created_at": meeting.created_at,
            "duration": meeting.duration,
            "segments": meeting.segments,
            "summary": meeting.summary,
            "speaker_names": meeting.speaker_names,
            "id": meeting.id,
            "provider": meeting.provider,
        },
    )


def test_server_exports_match_the_page_exports(format_js: Page) -> None:
    meeting = tricky_meeting()
    js = page_exports(format_js, meeting)
    ours = {fmt.value: export_meeting(meeting, fmt) for fmt in ExportFormat}
    assert meeting.speakers == js["names"]
    assert ours["srt"].content == js["srt"]
    assert ours["vtt"].content == js["vtt"]
    assert ours["txt"].content == js["txt"] + "\n", "the file ends its last line"
    assert json.loads(ours["json"].content) == json.loads(js["json"])
    # The page writes "Recorded <browser locale date>"; the server writes UTC. Everything else matches.
    drop_meta = [line for line in js["md"].split("\n") if not line.startswith("_Recorded ")]
    assert [line for line in ours["md"].content.split("\n") if not line.startswith("_Recorded ")] == drop_meta
    assert ours["md"].filename == f"{js['stem']}.md"
