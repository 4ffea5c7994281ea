"""Speaker turns meet the transcript: label each segment, split it where the speaker changes.

A segment with words is split at word boundaries: each word takes the speaker it overlaps most
(or the nearest turn), and runs of under `MIN_RUN_SECONDS` are folded into their neighbour so a
stray word does not make a turn of its own. A segment without words takes the speaker it overlaps
most. Backend labels become SPEAKER_1, SPEAKER_2, … in order of first appearance.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.diarization_backends.base import SpeakerTurn
from services.types import Segment, Word

MIN_RUN_SECONDS = 0.4


def speaker_at(start: float, end: float, turns: Sequence[SpeakerTurn]) -> str | None:
    """The speaker overlapping [start, end] most, else the nearest turn's; None without turns."""
    if not turns:
        return None
    overlap: dict[str, float] = {}
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
    if overlap:
        return max(overlap, key=lambda speaker: overlap[speaker])
    middle = (start + end) / 2
    nearest = min(turns, key=lambda turn: max(turn.start - middle, middle - turn.end, 0.0))
    return nearest.speaker


def _runs(words: list[Word], speakers: list[str | None]) -> list[tuple[str | None, list[Word]]]:
    runs: list[tuple[str | None, list[Word]]] = []
    for word, speaker in zip(words, speakers, strict=True):
        if runs and runs[-1][0] == speaker:
            runs[-1][1].append(word)
        else:
            runs.append((speaker, [word]))
    return runs


def _fold_short_runs(runs: list[tuple[str | None, list[Word]]]) -> list[tuple[str | None, list[Word]]]:
    changed = True
    while changed and len(runs) > 1:
        changed = False
        for index, (_, words) in enumerate(runs):
            if words[-1].end - words[0].start >= MIN_RUN_SECONDS:
                continue
            target = index - 1 if index > 0 else index + 1
            merged = runs[target][1] + words if target < index else words + runs[target][1]
            runs[target] = (runs[target][0], merged)
            del runs[index]
            changed = True
            break
    return _runs([w for _, ws in runs for w in ws], [s for s, ws in runs for _ in ws])


def _split(segment: Segment, turns: Sequence[SpeakerTurn]) -> list[Segment]:
    if not segment.words:
        return [Segment(segment.start, segment.end, segment.text, speaker_at(segment.start, segment.end, turns), [])]
    speakers = [speaker_at(word.start, word.end, turns) for word in segment.words]
    runs = _fold_short_runs(_runs(list(segment.words), speakers))
    if len(runs) == 1:
        return [Segment(segment.start, segment.end, segment.text, runs[0][0], list(segment.words))]
    out = []
    for index, (speaker, words) in enumerate(runs):
        start = segment.start if index == 0 else words[0].start
        end = segment.end if index == len(runs) - 1 else words[-1].end
        out.append(Segment(start, end, "".join(word.text for word in words).strip(), speaker, words))
    return out


def assign_speakers(segments: Sequence[Segment], turns: Sequence[SpeakerTurn]) -> list[Segment]:
    """New segments labelled SPEAKER_n (None everywhere when there are no turns), split at changes."""
    ordered = sorted(turns, key=lambda turn: turn.start)
    pieces = [piece for segment in segments for piece in _split(segment, ordered)]
    names: dict[str, str] = {}
    for piece in pieces:
        if piece.speaker is not None:
            piece.speaker = names.setdefault(piece.speaker, f"SPEAKER_{len(names) + 1}")
    return pieces
