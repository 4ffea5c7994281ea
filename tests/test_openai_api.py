"""POST /v1/audio/transcriptions with the official `openai` SDK against a real uvicorn server.

`client.audio.transcriptions.create` in every response_format, word timestamps, the prompt, and the
errors the SDK turns into its own exceptions (401, 413, 415, 400).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from tests.audio_files import AudioFile, encode
from tests.support import load_wav, make_settings, run_server

pytestmark = pytest.mark.timeout(300)

API_KEY = "openai-compatible-s3cret"
KEY_WORDS = ("quarterly", "numbers", "customer", "survey")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("openai_api")
    with run_server(make_settings(tmp_path, api_key=API_KEY, max_upload_mb=1.0)) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=120) as sdk:
        yield sdk


def one_voice(extension: str = "mp3") -> AudioFile:
    pcm, rate = load_wav("one_voice.wav")
    return encode(pcm, rate, extension, stem="one_voice")


def as_upload(audio: AudioFile) -> tuple[str, io.BytesIO, str]:
    return (audio.name, io.BytesIO(audio.data), audio.media_type)


def assert_right_words(text: str) -> None:
    missing = [word for word in KEY_WORDS if word not in text.lower()]
    assert not missing, f"{missing} missing from {text!r}"


def test_json_is_the_default(client: openai.OpenAI) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=as_upload(one_voice("m4a")))
    assert isinstance(result, openai.types.audio.Transcription)
    assert_right_words(result.text)


def test_text_srt_and_vtt(client: openai.OpenAI) -> None:
    audio = one_voice("ogg")
    text = client.audio.transcriptions.create(model="whisper-1", file=as_upload(audio), response_format="text")
    assert isinstance(text, str)
    assert_right_words(text)
    srt = client.audio.transcriptions.create(model="whisper-1", file=as_upload(audio), response_format="srt")
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)\n", srt)
    assert cues and cues[0][0] == "1", srt
    assert_right_words(" ".join(cue[3] for cue in cues))
    assert all(start < end for _, start, end, _ in cues)
    vtt = client.audio.transcriptions.create(model="whisper-1", file=as_upload(audio), response_format="vtt")
    assert vtt.startswith("WEBVTT\n"), vtt
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}", vtt)
    assert_right_words(vtt)


def test_verbose_json_with_segment_and_word_times(client: openai.OpenAI) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=as_upload(one_voice("flac")),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
        temperature=0.0,
    )
    assert isinstance(result, openai.types.audio.TranscriptionVerbose)
    assert_right_words(result.text)
    assert result.language == "en"
    assert 9.5 < result.duration < 10.5
    assert result.segments and result.words
    assert [segment.id for segment in result.segments] == list(range(len(result.segments)))
    assert all(0 <= segment.start < segment.end <= result.duration + 0.5 for segment in result.segments)
    quarterly = next(word for word in result.words if "quarterly" in word.word.lower())
    assert 0.3 < quarterly.start < 2.5, "word times are where the word was said (0.5-4.5 s in the fixture)"
    words_only = client.audio.transcriptions.create(
        model="whisper-1",
        file=as_upload(one_voice("wav")),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words_only.words and not words_only.segments


def test_the_transcript_is_stored_as_a_meeting(server: str, client: openai.OpenAI) -> None:
    raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=as_upload(one_voice("webm")))
    meeting_id = raw.headers["x-meeting-id"]
    assert_right_words(raw.parse().text)
    stored = httpx.get(f"{server}/api/meetings/{meeting_id}", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert stored["status"] == "done" and stored["source"] == "upload"
    assert stored["title"] == "one_voice.webm"
    assert_right_words(stored["transcript"])


def test_errors_become_the_sdks_exceptions(server: str, client: openai.OpenAI) -> None:
    intruder = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with intruder, pytest.raises(openai.AuthenticationError):
        intruder.audio.transcriptions.create(model="whisper-1", file=as_upload(one_voice()))
    noise = (np.random.default_rng(3).standard_normal(16_000 * 40) * 3000).astype(np.int16)
    with pytest.raises(openai.APIStatusError) as too_big:
        client.audio.transcriptions.create(model="whisper-1", file=as_upload(encode(noise, 16_000, "wav")))
    assert too_big.value.status_code == 413
    assert "MAX_UPLOAD_MB" in too_big.value.message
    with pytest.raises(openai.APIStatusError) as not_audio:
        client.audio.transcriptions.create(
            model="whisper-1", file=("notes.txt", io.BytesIO(b"meeting notes\n" * 100), "text/plain")
        )
    assert not_audio.value.status_code == 415
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(
            model="whisper-1",
            file=as_upload(one_voice()),
            response_format="diarized_json",  # type: ignore[arg-type]
        )
    result = client.audio.transcriptions.create(model="whisper-1", file=as_upload(one_voice()))
    assert_right_words(result.text)
