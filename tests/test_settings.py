"""Settings as a newcomer writes them: usual spellings accepted, misspelt names pointed out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.errors import ConfigurationError
from services.setting_names import unknown_setting_warnings
from services.settings import Settings, load_settings


def _settings(monkeypatch: pytest.MonkeyPatch, **environ: str) -> Settings:
    """Settings from exactly `environ` (the developer's own settings removed)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None)


@pytest.mark.parametrize(
    ("given", "level"),
    [("info", "INFO"), ("Debug", "DEBUG"), (" warning ", "WARNING"), ("warn", "WARNING"), ("ERROR", "ERROR")],
)
def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch, given: str, level: str) -> None:
    assert _settings(monkeypatch, LOG_LEVEL=given).log_level == level


def test_choices_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, ASR_DEVICE="CPU", DIARIZATION_BACKEND="Embedded", ORCHESTRATOR_BACKEND="AsyncIO")
    assert (settings.asr_device, settings.diarization_backend, settings.orchestrator_backend) == (
        "cpu",
        "embedded",
        "asyncio",
    )


def test_a_bad_value_still_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="LOG_LEVEL"):
        _settings(monkeypatch, LOG_LEVEL="chatty")


def test_unknown_names_with_our_prefixes_are_pointed_out() -> None:
    environ = {
        "ASR_BEAM_SIZ": "3",  # typo
        "VLLM_URL": "http://x",  # close enough to guess
        "TTS_VOICE": "en",  # no such setting, nothing close
        "ASR_BEAM_SIZE": "3",  # fine
        "OPENAI_ORG_ID": "org",  # the OpenAI SDK's own name: not ours to judge
        "PATH": "/usr/bin",
    }
    warnings = unknown_setting_warnings(environ, env_file=None)
    assert len(warnings) == 3
    assert (
        warnings[0].startswith("ASR_BEAM_SIZ (from environment) is not a setting") and "ASR_BEAM_SIZE?" in warnings[0]
    )
    assert warnings[1].startswith("TTS_VOICE (from environment)") and "did you mean" not in warnings[1]
    assert warnings[2].endswith("did you mean VLLM_BASE_URL?")


def test_every_unknown_name_in_the_env_file_is_pointed_out(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LLM_PROVIDER_ODER=offline\nPORT=8001\nSLACK_WEBHOOK=https://hooks.example\n")
    warnings = unknown_setting_warnings({}, env_file=env_file)
    assert [w.split(" ")[0] for w in warnings] == ["LLM_PROVIDER_ODER", "SLACK_WEBHOOK"]
    assert "did you mean LLM_PROVIDER_ORDER?" in warnings[0]
    assert str(env_file) in warnings[0]


def test_every_setting_is_a_known_name() -> None:
    environ = {name.upper(): "x" for name in Settings.model_fields}
    assert unknown_setting_warnings(environ, env_file=None) == []


def test_offline_fallback_and_model_discovery_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch)
    assert settings.llm_offline_fallback is True and settings.vllm_model_id == ""
    assert _settings(monkeypatch, LLM_OFFLINE_FALLBACK="False").llm_offline_fallback is False


def test_every_setting_is_in_env_example_with_a_valid_name() -> None:
    """`.env.example` is where a newcomer looks first: every setting is there, and nothing there is misspelt."""
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    names = {(field.alias or name).upper() for name, field in Settings.model_fields.items()}
    assert names - listed == set(), "settings missing from .env.example"
    assert listed - names == set(), "names in .env.example that are no setting"


def test_the_admission_prior_is_calibrated_unless_the_operator_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings(monkeypatch).admission_session_cpu is None  # unset: calibrated at start-up
    assert _settings(monkeypatch, ADMISSION_SESSION_CPU="0.45").admission_session_cpu == 0.45
    with pytest.raises(ConfigurationError, match="ADMISSION_SESSION_CPU"):
        _settings(monkeypatch, ADMISSION_SESSION_CPU="0")
