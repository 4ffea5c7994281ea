"""Transcript exports of a stored meeting: plain text, Markdown, JSON, SRT and WebVTT.

The shapes mirror the page's own exports (`static/format.js`: toPlainText, toMarkdown, toJSON,
toSRT, toVTT, fileStem), so a file downloaded from the server reads like one the page made;
speakers appear under their display names (chosen names, else "Speaker N").
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from services.stored_meeting import GENERIC_LABEL, StoredMeeting, iso_time


class ExportFormat(StrEnum):
    TXT = "txt"
    MD = "md"
    JSON = "json"
    SRT = "srt"
    VTT = "vtt"


@dataclass(frozen=True, slots=True)
class Export:
    """One rendered file: its text, media type and download name."""

    content: str
    media_type: str
    filename: str

    @property
    def content_disposition(self) -> str:
        return f'attachment; filename="{self.filename}"'


def export_meeting(meeting: StoredMeeting, fmt: ExportFormat) -> Export:
    """Render `meeting` as `fmt`, named like the page names its downloads."""
    render, media_type = _FORMATS[ExportFormat(fmt)]
    return Export(render(meeting), media_type, f"{file_stem(meeting.title, meeting.created_at)}.{fmt.value}")


def file_stem(title: str | None, created_at: float) -> str:
    """ "Weekly sync" at 2024-03-01 09:30 UTC -> "weekly-sync-2024-03-01-0930" (ASCII: safe in a header)."""
    slug = unicodedata.normalize("NFKD", (title or "meeting").lower())
    slug = re.sub(r"[^\w\s-]", "", slug, flags=re.ASCII).strip()
    slug = re.sub(r"[\s_-]+", "-", slug, flags=re.ASCII)[:60] or "meeting"
    return f"{slug}-{datetime.fromtimestamp(created_at, UTC):%Y-%m-%d-%H%M}"


def clock(seconds: float) -> str:
    """75.4 -> "01:15"; 3725 -> "1:02:05"."""
    total = max(0, int(seconds or 0))
    hours, minutes, secs = total // 3600, total % 3600 // 60, total % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def cue_time(seconds: float, separator: str) -> str:
    """SRT (",") or WebVTT (".") time: "00:01:02,345"."""
    ms = max(0, round((seconds or 0) * 1000))
    return f"{ms // 3_600_000:02d}:{ms % 3_600_000 // 60_000:02d}:{ms % 60_000 // 1000:02d}{separator}{ms % 1000:03d}"


def _spoken(meeting: StoredMeeting) -> list[dict[str, Any]]:
    return [s for s in meeting.segments if s["text"] and s["text"].strip()]


def _turns(segments: Sequence[dict[str, Any]]) -> list[tuple[str | None, float, list[str]]]:
    """Consecutive segments of one speaker as (label, start, texts)."""
    turns: list[tuple[str | None, float, list[str]]] = []
    for segment in segments:
        if turns and turns[-1][0] == segment.get("speaker"):
            turns[-1][2].append(segment["text"].strip())
        else:
            turns.append((segment.get("speaker"), segment["start"], [segment["text"].strip()]))
    return turns


def speaker_name(raw: str) -> str:
    """A label on its own: "SPEAKER_01" -> "Speaker 01" (format.js speakerName)."""
    match = GENERIC_LABEL.match(raw.strip())
    return f"Speaker {match.group(1)}" if match else raw


def _name(meeting: StoredMeeting, label: str | None) -> str:
    return "" if label is None else meeting.speakers.get(label) or speaker_name(label)


def _relabel(text: str | None, names: dict[str, str]) -> str | None:
    """Speaker labels inside free text (the summary) replaced by display names."""
    labels = sorted((label for label in names if names[label] != label), key=len, reverse=True)
    if not text or not labels:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, labels)) + r")\b")
    return pattern.sub(lambda match: names[match.group(0)], text)


def relabeled_summary(meeting: StoredMeeting) -> dict[str, Any] | None:
    summary, names = meeting.summary, meeting.speakers
    if summary is None:
        return None
    return {
        **summary,
        "summary": _relabel(summary.get("summary"), names),
        "action_items": [
            {**item, "text": _relabel(item.get("text"), names), "owner": _relabel(item.get("owner"), names)}
            for item in summary.get("action_items") or []
        ],
        **{
            key: [_relabel(v, names) for v in summary.get(key) or []]
            for key in ("decisions", "topics", "open_questions")
        },
    }


def to_text(meeting: StoredMeeting) -> str:
    lines = []
    for label, start, texts in _turns(_spoken(meeting)):
        who = _name(meeting, label)
        lines.append(f"[{clock(start)}] {who + ': ' if who else ''}{' '.join(texts)}")
    return "\n\n".join(lines) + "\n"


def to_markdown(meeting: StoredMeeting) -> str:
    lines = [f"# {meeting.title or 'Meeting notes'}", ""]
    meta = [f"Recorded {datetime.fromtimestamp(meeting.created_at, UTC):%Y-%m-%d %H:%M} UTC"]
    if meeting.duration:
        meta.append(f"duration {clock(meeting.duration)}")
    lines += [f"_{', '.join(meta)}_", ""]
    summary = relabeled_summary(meeting)
    if summary:
        if summary.get("summary"):
            lines += ["## Summary", "", summary["summary"].strip(), ""]
        sections: list[tuple[str, str, Callable[[Any], str]]] = [
            ("Action items", "action_items", _action_line),
            ("Decisions", "decisions", lambda d: f"- {d}"),
            ("Topics", "topics", lambda t: f"- {t}"),
            ("Open questions", "open_questions", lambda q: f"- {q}"),
        ]
        for heading, key, line in sections:
            if summary.get(key):
                lines += [f"## {heading}", "", *map(line, summary[key]), ""]
    lines += ["## Transcript", ""]
    for label, start, texts in _turns(_spoken(meeting)):
        lines += [f"**{_name(meeting, label) or 'Unknown speaker'}** [{clock(start)}]", "", " ".join(texts), ""]
    return "\n".join(lines)


def _action_line(item: dict[str, Any]) -> str:
    bits = []
    if item.get("owner"):
        bits.append(f"**{speaker_name(item['owner'])}**")
    if item.get("due"):
        bits.append(f"due {item['due']}")
    if isinstance(item.get("time"), int | float):
        bits.append(f"at {clock(item['time'])}")
    return f"- [ ] {item['text']}" + (f" ({', '.join(bits)})" if bits else "")


def to_json(meeting: StoredMeeting) -> str:
    document = {
        "title": meeting.title,
        "recorded_at": iso_time(meeting.created_at),
        "duration": meeting.duration,
        "session_id": meeting.id,
        "provider": meeting.provider,
        "segments": [
            {
                "start": round(s["start"], 3),
                "end": round(s["end"], 3),
                "speaker": None if s.get("speaker") is None else _name(meeting, s["speaker"]),
                "text": s["text"].strip(),
            }
            for s in _spoken(meeting)
        ],
        "summary": relabeled_summary(meeting),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _cue_end(segment: dict[str, Any]) -> float:
    # A cue must not end before it starts; a zero-length segment gets a moment on screen.
    return segment["end"] if segment["end"] > segment["start"] else segment["start"] + 1


def to_srt(meeting: StoredMeeting) -> str:
    cues = []
    for index, segment in enumerate(_spoken(meeting), start=1):
        who = _name(meeting, segment.get("speaker"))
        times = f"{cue_time(segment['start'], ',')} --> {cue_time(_cue_end(segment), ',')}"
        cues.append(f"{index}\n{times}\n{who + ': ' if who else ''}{segment['text'].strip()}\n")
    return "\n".join(cues)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(meeting: StoredMeeting) -> str:
    cues = ["WEBVTT\n"]
    for index, segment in enumerate(_spoken(meeting), start=1):
        who = _name(meeting, segment.get("speaker"))
        text = _vtt_escape(segment["text"].strip())
        times = f"{cue_time(segment['start'], '.')} --> {cue_time(_cue_end(segment), '.')}"
        cues.append(f"{index}\n{times}\n{f'<v {_vtt_escape(who)}>' if who else ''}{text}\n")
    return "\n".join(cues)


_FORMATS: dict[ExportFormat, tuple[Callable[[StoredMeeting], str], str]] = {
    ExportFormat.TXT: (to_text, "text/plain; charset=utf-8"),
    ExportFormat.MD: (to_markdown, "text/markdown; charset=utf-8"),
    ExportFormat.JSON: (to_json, "application/json"),
    ExportFormat.SRT: (to_srt, "application/x-subrip; charset=utf-8"),
    ExportFormat.VTT: (to_vtt, "text/vtt; charset=utf-8"),
}
