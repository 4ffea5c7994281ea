"""The structured answer every provider is asked for: pydantic model, JSON schema, prompt, parsing.

`LLMResponseModel` validates whatever a provider returns; `RESPONSE_SCHEMA` is the same shape
as a strict JSON schema (every key required, nullable where optional, no extra keys), which is
what OpenAI-compatible `response_format`, Anthropic `input_schema` and Gemini
`response_json_schema` all accept. Parsing is more lenient than the schema: an answer with the
contract's required fields (`summary`, `action_items`, `decisions`) is accepted, and missing or
null optional ones (`key_topics`, `open_questions`) default to empty, because small local models
served by vLLM often skip them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.errors import MalformedLLMOutput
from services.types import ActionItem, MeetingSummary, Segment


class ActionItemModel(BaseModel):
    """One action item as the LLM reports it."""

    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1)
    owner: str | None = None
    due: str | None = None
    time: float | None = None

    @field_validator("owner", "due", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


class LLMResponseModel(BaseModel):
    """The validated summary payload; `to_summary()` turns it into the pipeline's dataclass."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1)
    action_items: list[ActionItemModel]
    decisions: list[str]
    key_topics: list[str] = Field(default_factory=list)
    open_questions: list[str] = Field(default_factory=list)

    @field_validator("key_topics", "open_questions", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    def to_summary(self) -> MeetingSummary:
        return MeetingSummary(
            summary=self.summary.strip(),
            action_items=[ActionItem(a.text.strip(), a.owner, a.due, a.time) for a in self.action_items],
            decisions=[d.strip() for d in self.decisions if d.strip()],
            topics=[t.strip() for t in self.key_topics if t.strip()],
            open_questions=[q.strip() for q in self.open_questions if q.strip()],
        )


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "description": "Three to six sentences on what the meeting covered."},
        "action_items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "What has to be done, starting with a verb."},
                    "owner": _nullable("string") | {"description": "Who does it, as named in the transcript."},
                    "due": _nullable("string") | {"description": "When, as said (e.g. 'Thursday')."},
                    "time": _nullable("number") | {"description": "Transcript seconds it was said at."},
                },
                "required": ["text", "owner", "due", "time"],
                "additionalProperties": False,
            },
        },
        "decisions": _STRINGS,
        "key_topics": _STRINGS,
        "open_questions": _STRINGS,
    },
    "required": ["summary", "action_items", "decisions", "key_topics", "open_questions"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = (
    "You summarise meeting transcripts for the people who attended. Each transcript line is "
    "'[<seconds>s] <speaker>: <text>'. Answer only with JSON matching the given schema: a short "
    "factual summary; action items with the owner's name when someone is named or volunteers "
    "(otherwise the speaker label, or null), the due date as said, and the seconds of the line "
    "it came from; decisions the group agreed on; key topics; questions left open. Never invent "
    "names, dates or items that are not in the transcript."
)


def transcript_line(segment: Segment) -> str:
    """One prompt line, keeping the speaker and the start time."""
    return f"[{segment.start:.1f}s] {segment.speaker or 'UNKNOWN'}: {' '.join(segment.text.split())}"


def build_prompt(segments: Sequence[Segment], title: str | None, part: tuple[int, int] = (1, 1)) -> str:
    """The user message for one call (one chunk of a long meeting when `part` says so)."""
    header = f"Meeting title: {title}\n" if title else ""
    if part[1] > 1:
        header += f"This is part {part[0]} of {part[1]} of a long meeting; summarise this part only.\n"
    body = "\n".join(transcript_line(segment) for segment in segments)
    return f"{header}Transcript:\n{body}\n\nReturn the JSON object now."


def repair_prompt(original_prompt: str, raw: str, problem: str) -> str:
    """Ask the same provider to fix its own malformed answer, once."""
    return (
        f"Your previous answer could not be used: {problem}.\n"
        f"Previous answer (may be truncated):\n{raw[:4000]}\n\n"
        "Answer again with only one complete JSON object matching the schema, no Markdown.\n\n"
        f"{original_prompt}"
    )


_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*(?P<body>.*?)\s*(?:```\s*)?$", re.DOTALL)


def parse_response(provider: str, raw: str | dict[str, Any]) -> LLMResponseModel:
    """Validate a provider's answer, tolerating Markdown fences and chatter around the object.

    Raises:
        MalformedLLMOutput: not JSON (e.g. truncated) or keys missing / of the wrong type.
    """
    if isinstance(raw, str):
        raw = _decode(provider, raw)
    try:
        return LLMResponseModel.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "root" for err in exc.errors()})
        raise MalformedLLMOutput(
            provider, f"answer is missing or has invalid fields: {', '.join(fields[:6])}", reason="malformed"
        ) from exc


def _decode(provider: str, text: str) -> Any:
    candidate = text.strip()
    fenced = _FENCE.match(candidate) if candidate.startswith("```") else None
    if fenced:
        candidate = fenced.group("body")
    if not candidate.startswith("{") and "{" in candidate:
        candidate = candidate[candidate.index("{") :]
    if candidate.startswith("{") and not candidate.endswith("}") and "}" in candidate:
        candidate = candidate[: candidate.rindex("}") + 1]
    try:
        return json.loads(candidate)
    except json.JSONDecodeError as exc:
        problem = "empty answer" if not text.strip() else f"not valid JSON ({exc.msg} at char {exc.pos}; truncated?)"
        raise MalformedLLMOutput(provider, problem, reason="malformed") from exc
