"""Golden tests with the real bundled tiny.en model on committed recordings."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper import decode_audio

from observability import Metrics
from services.asr_service import WhisperRecognizer, load_recognizer
from services.errors import ConfigurationError
from services.transcript_words import trim_loop, trim_self_repetition
from services.types import Word
from services.whisper_pieces import careful_token_budget
from tests.support import FIXTURES, load_wav, make_settings


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> WhisperRecognizer:
    return load_recognizer(make_settings(tmp_path_factory.mktemp("asr")), Metrics())


def _audio(name: str) -> np.ndarray:
    pcm, rate = load_wav(name)
    assert rate == 16000
    return pcm.astype(np.float32) / 32768.0


def test_careful_transcription_has_the_words_and_their_times(recognizer: WhisperRecognizer) -> None:
    segments = recognizer.transcribe(_audio("one_voice.wav"), offset=10.0)
    text = " ".join(s.text for s in segments).lower()
    for word in ("quarterly", "numbers", "marketing", "customer", "survey", "month"):
        assert word in text
    words = [w for s in segments for w in s.words]
    assert words and all(10.0 <= w.start <= w.end <= 10.0 + 11 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)


def test_draft_of_a_short_window_is_close_to_the_careful_text(recognizer: WhisperRecognizer) -> None:
    audio = _audio("one_voice.wav")[: int(4.6 * 16000)]  # "The quarterly numbers look strong and sales grew..."
    draft = recognizer.draft(audio, 0.0).lower()
    assert "numbers look strong" in draft
    assert "every region" in draft


def test_real_meeting_audio(recognizer: WhisperRecognizer) -> None:
    segments = recognizer.transcribe(_audio("ami_dev00_12s.wav"), offset=0.0)
    text = " ".join(s.text for s in segments).lower()
    assert "ready to begin" in text


def test_a_window_opening_on_a_pause_keeps_its_sentences(recognizer: WhisperRecognizer) -> None:
    """Whisper's no-speech guess for this window is 0.6-0.65 although it holds two sentences.

    Dropping on that guess alone once lost a reconnected session's whole transcript.
    """
    audio = _audio("meeting_two_voices.wav")[int(9.8 * 16000) : int(21.8 * 16000)]
    text = " ".join(s.text for s in recognizer.transcribe(audio, offset=9.8)).lower()
    assert "launch date" in text and "budget report" in text


def test_silence_gives_no_segments(recognizer: WhisperRecognizer) -> None:
    assert recognizer.transcribe(np.zeros(16000 * 3, dtype=np.float32), offset=0.0) == []


@pytest.mark.parametrize(
    ("draft", "expected"),
    [
        ("Okay, well I think. Okay, well I think. Okay, well", "Okay, well I think."),
        (
            "I will send the budget report to the fire. I will send the budget",
            "I will send the budget report to the fire.",
        ),
        ("Perfect Perfect Perfect", "Perfect"),
        ("Bye. Bye. Bye. Bye.", "Bye."),
        ("I will send the report by Friday.", "I will send the report by Friday."),
        ("no no, that is fine", "no no, that is fine"),
        ("", ""),
    ],
)
def test_trim_self_repetition(draft: str, expected: str) -> None:
    assert trim_self_repetition(draft) == expected


def _words(text: str) -> list[Word]:
    return [Word(start=i * 0.3, end=i * 0.3 + 0.2, text=" " + w) for i, w in enumerate(text.split())]


@pytest.mark.parametrize(
    ("careful", "expected"),
    [
        ("I'm a man, I'm a man, I'm a man, I'm a man, I'm", "I'm a man,"),
        ("And he's Ed. And he's Ed. E-R.", "And he's Ed. And he's Ed. E-R."),  # said twice: kept
        ("so we go on on on on and on", "so we go on"),
        ("the budget report is due on Friday", "the budget report is due on Friday"),
        ("", ""),
    ],
)
def test_trim_loop_cuts_a_careful_pass_at_its_third_copy(careful: str, expected: str) -> None:
    assert "".join(w.text for w in trim_loop(_words(careful))).strip() == expected


def test_careful_token_budget_bounds_a_window_by_its_length() -> None:
    # CTranslate2 stops at half of max_length: the budget asks for twice the room fast speech needs
    short, long = careful_token_budget(2.4, prompt_tokens=3), careful_token_budget(30.0, prompt_tokens=3)
    assert 2 * (8 + 2.4 * 5) <= short < long
    assert careful_token_budget(300.0, prompt_tokens=3) == long  # one 30 s window at a time
    assert careful_token_budget(30.0, prompt_tokens=230) == 448 - 230 - 1  # faster-whisper's limit


def test_a_missing_model_directory_names_the_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, asr_model_id=str(tmp_path))  # a directory with no model in it
    with pytest.raises(ConfigurationError, match="ASR_MODEL_ID"):
        load_recognizer(settings, Metrics())


def test_video_outro_hallucinations_are_dropped() -> None:
    from types import SimpleNamespace

    from services.whisper_pieces import is_hallucination

    def piece(text: str, probability: float = 0.9, no_speech: float = 0.1) -> SimpleNamespace:
        words = [SimpleNamespace(probability=probability) for _ in text.split()]
        return SimpleNamespace(text=text, words=words, no_speech_prob=no_speech)

    assert is_hallucination(piece(" Thank you so much for watching, and I'll see you in the next one."))
    assert is_hallucination(piece(" You", probability=0.03))
    assert is_hallucination(piece(" Right, the budget.", no_speech=0.9))
    assert not is_hallucination(piece(" Thank you, Alice, that was helpful."))
    assert not is_hallucination(piece(" I will send the budget report to the finance team.", no_speech=0.65))


def _float_audio(name: str) -> np.ndarray:
    """A float32 WAV fixture, bit for bit (rounding to 16 bits moves Whisper off this window's edge)."""
    return decode_audio(str(FIXTURES / name))


def _careful_calls(metrics: Metrics, op: str) -> float:
    return metrics.asr_model_calls.labels(path="careful", op=op)._value.get()


def test_a_far_field_window_keeps_its_words_with_one_fallback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """AMI dev00 12-19 s (two far-field talkers at once) sits on the edge of Whisper's
    log-probability test: with faster-whisper's whole ladder the careful pass re-decoded it at five
    temperatures (five candidates each), which made stop -> final take seconds on real rooms. With
    the default single fallback the words are still there."""
    metrics = Metrics()
    recognizer = load_recognizer(make_settings(tmp_path), metrics)
    segments = recognizer.transcribe(_float_audio("ami_dev00_12s_19s.wav"), offset=12.0)
    encodes = _careful_calls(metrics, "encode")
    assert encodes >= 1 and _careful_calls(metrics, "fallback") <= encodes
    text = " ".join(s.text for s in segments).lower()
    assert "ebenezer" in text and "group" in text
    assert all(12.0 <= w.start <= w.end <= 19.5 for s in segments for w in s.words)


@pytest.mark.parametrize("fallbacks", [5, 1, 0])
def test_fallbacks_per_window_are_bounded(tmp_path, fallbacks: int) -> None:  # type: ignore[no-untyped-def]
    """A spoken phrase repeated back to back: Whisper's transcript of it is so repetitive that the
    compression-ratio test fails at every temperature, so each window uses all the fallbacks it
    may, and no more."""
    pcm, _ = load_wav("one_voice.wav")
    clip = pcm[int(0.3 * 16000) : int(1.1 * 16000)].astype(np.float32) / 32768
    metrics = Metrics()
    recognizer = load_recognizer(make_settings(tmp_path, asr_careful_fallbacks=fallbacks), metrics)
    recognizer.transcribe(np.tile(clip, 25), offset=0.0)
    encodes, fallen_back = _careful_calls(metrics, "encode"), _careful_calls(metrics, "fallback")
    assert encodes >= 1
    assert fallen_back <= encodes * fallbacks
    assert fallen_back >= min(fallbacks, 2), "the repetition trips the fallback tests"
    assert _careful_calls(metrics, "generate") == encodes + fallen_back


def _encoder_calls(metrics: Metrics) -> float:
    return sum(
        sample.value
        for family in metrics.asr_model_calls.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("op") == "encode"
    )


def test_a_careful_pass_encodes_one_window_when_the_audio_fits_in_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Bare transcribe seeks to this AMI window's last returned word (7.5 s) and encodes the 4 s
    after it, padded to 30 s, once more; the live transcriber re-decodes such a rest itself when
    its VAD heard speech there, so the careful pass stops after one encoder window."""
    metrics = Metrics()
    recognizer = load_recognizer(make_settings(tmp_path), metrics)
    audio = decode_audio(str(FIXTURES / "ami_dev00_1s_17s.wav"))[int(3.9 * 16000) :]
    before = _encoder_calls(metrics)
    list(recognizer.model.transcribe(audio, language="en", word_timestamps=True, temperature=0.0)[0])
    assert _encoder_calls(metrics) - before == 2  # the fixture still makes bare transcribe seek
    before = _encoder_calls(metrics)
    segments = recognizer.transcribe(audio, offset=0.0)
    assert _encoder_calls(metrics) - before == 1
    assert "name" in " ".join(s.text for s in segments).lower()
    # the first window's words are kept when its budget of encoder calls is spent
    assert segments and segments[0].words and segments[0].start < 1.0 and segments[-1].end <= len(audio) / 16000
