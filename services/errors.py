"""The exception tree of the meeting assistant.

    MeetingAssistantError
    ├── ConfigurationError      a setting is invalid or a required resource is missing (start-up)
    ├── ProtocolError           a client sent something the WebSocket contract does not allow
    │   └── SessionStateError   a message that is illegal in the session's current state
    ├── AudioDecryptionError    buffered audio could not be decrypted (wrong AUDIO_ENCRYPTION_KEY)
    │   └── SpoolKeyError       a spool file was sealed with another key
    ├── SpoolFormatError        a file in the spool directory is not a readable audio spool
    ├── BacklogFullError        too much background work is waiting (MAX_BACKGROUND_AUDIO_SECONDS)
    ├── ASRError                the speech recogniser failed
    ├── DiarizationError        a diariser failed (the caller falls back to the embedded one)
    ├── LLMError                a provider failed
    │   ├── TransientLLMError   worth retrying: timeout, 429, 5xx, connection
    │   ├── PermanentLLMError   not worth retrying: 400/401/403/404/422
    │   └── MalformedLLMOutput  the answer did not match the schema
    ├── WorkflowError           a post-meeting hook failed
    ├── UploadError             an uploaded file cannot be taken (a form without `file`)
    │   ├── UploadTooLargeError   over MAX_UPLOAD_MB (HTTP 413)
    │   └── NotAudioError         no audio stream PyAV can decode (HTTP 415)
    └── StoreError              the meeting store (database) failed or cannot be reached
        ├── MeetingNotFoundError  no stored meeting has that id
        └── MeetingRequestError   a request the store cannot honour (bad cursor, unknown speaker label)

Third-party errors are translated once, at the adapter boundary, with `raise ... from exc`.
Each error's message says what happened and what to do about it.
"""

from __future__ import annotations


class MeetingAssistantError(Exception):
    """Base of every error this application raises on purpose."""


class ConfigurationError(MeetingAssistantError):
    """A setting is invalid or a required resource is missing; raised at start-up."""


class ProtocolError(MeetingAssistantError):
    """A client broke the WebSocket contract. `code` is sent in the `error` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SessionStateError(ProtocolError):
    """A message that the session's current state does not allow."""


class AudioDecryptionError(MeetingAssistantError):
    """Buffered audio could not be decrypted."""


class SpoolKeyError(AudioDecryptionError):
    """A spool file was sealed with another key than the one configured: its audio cannot be read."""


class SpoolFormatError(MeetingAssistantError):
    """A spool file is not an audio spool, or holds no readable meeting record."""


class BacklogFullError(MeetingAssistantError):
    """Too many background jobs (recordings whose client left, uploads) are already waiting."""


class ASRError(MeetingAssistantError):
    """The speech recogniser failed."""


class DiarizationError(MeetingAssistantError):
    """A diarisation backend failed or could not be loaded."""


class LLMError(MeetingAssistantError):
    """An LLM provider failed. `provider` names it, `reason` is a short metric label."""

    def __init__(self, provider: str, message: str, *, reason: str = "error") -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.reason = reason


class TransientLLMError(LLMError):
    """A failure worth retrying (timeout, 429, 5xx, connection). `retry_after` in seconds."""

    def __init__(
        self, provider: str, message: str, *, reason: str = "transient", retry_after: float | None = None
    ) -> None:
        super().__init__(provider, message, reason=reason)
        self.retry_after = retry_after


class PermanentLLMError(LLMError):
    """A failure that retrying cannot fix (bad request, bad key, no such model)."""


class MalformedLLMOutput(LLMError):
    """The provider answered, but not with JSON matching the schema."""


class WorkflowError(MeetingAssistantError):
    """A post-meeting hook failed."""


class UploadError(MeetingAssistantError):
    """An uploaded file cannot be taken as sent; the message says what to send instead."""


class UploadTooLargeError(UploadError):
    """The upload is bigger than MAX_UPLOAD_MB; reading stopped at the limit."""


class NotAudioError(UploadError):
    """The upload holds no audio stream that can be decoded (not audio, or damaged)."""


class StoreError(MeetingAssistantError):
    """The meeting store failed or cannot be reached (database down, disk full, bad DATABASE_URL)."""


class MeetingNotFoundError(StoreError):
    """No stored meeting has this id (never stored, or deleted)."""

    def __init__(self, meeting_id: str) -> None:
        super().__init__(f"No meeting with id {meeting_id!r}: it was never stored or has been deleted.")
        self.meeting_id = meeting_id


class MeetingRequestError(StoreError):
    """A store request that cannot be honoured as asked; the message says what to change."""
