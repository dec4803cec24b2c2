"""The settings table, the loader's error messages and `fleetwatch config check`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleetwatch import cli
from fleetwatch.config import SETTINGS, ConfigError, load_config
from fleetwatch.config.loader import REDACTED, _coerce, reference_markdown
from fleetwatch.config.settings import format_duration

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleetwatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_setting_is_documented_and_its_default_is_valid() -> None:
    for s in SETTINGS:
        assert len(s.help) >= 30 and s.help.rstrip().endswith("."), f"{s.key} needs help text"
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", s.key), f"{s.key} is not section.key"
        written = format_duration(s.default) if s.kind == "duration" else s.default  # as a file would say it
        assert _coerce(s, written, from_env=False) == s.default, f"{s.key} default is invalid"
    assert len({s.key for s in SETTINGS}) == len(SETTINGS)


def test_generated_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), "run `make docs`"
    assert "(docs/configuration.md)" in (ROOT / "README.md").read_text(encoding="utf-8"), (
        "the README links the reference"
    )
    for s in SETTINGS:
        assert f"`{s.key}`" in committed


def test_defaults_without_a_file() -> None:
    cfg = load_config(None, environ={})
    assert cfg["store.path"] == "fleetwatch.db"
    assert cfg["poll.fast_interval"] == 60
    assert all(src == "default" for src in cfg.sources.values())


def test_file_values_durations_and_env_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[store]
path = "/var/lib/fleetwatch/store.db"
raw_retention = "7d"

[aws]
regions = ["us-east-1", "eu-west-1"]
role_arns = ["arn:aws:iam::210987654321:role/fleetwatch-reader"]

[poll]
fast_interval = "2m"
""",
    )
    cfg = load_config(
        path, environ={"FLEETWATCH_POLL_SLOW_INTERVAL": "15m", "FLEETWATCH_AWS_REGIONS": "ap-southeast-2, us-west-2"}
    )
    assert cfg["store.raw_retention"] == 7 * 86400
    assert cfg["poll.fast_interval"] == 120
    assert cfg["poll.slow_interval"] == 900
    assert cfg["aws.regions"] == ["ap-southeast-2", "us-west-2"]
    assert cfg.sources["aws.regions"] == "env FLEETWATCH_AWS_REGIONS"
    assert cfg.sources["store.path"] == "file"


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nraw_retension = "7d"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    text = str(err.value)
    assert str(path) in text and "store.raw_retension" in text
    assert "did you mean 'store.raw_retention'?" in text


def test_wrong_type_and_range_are_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[poll]
fast_interval = 0
lookback = true

[aws]
regions = ["us-east-1", "Mars"]
""",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    problems = {p.key: p for p in err.value.problems}
    assert set(problems) == {"poll.fast_interval", "poll.lookback", "aws.regions"}
    assert "below the minimum 1m" in problems["poll.fast_interval"].message
    assert "expected a duration" in problems["poll.lookback"].message
    assert "'Mars' is not valid" in problems["aws.regions"].message
    assert 'fast_interval = "1m"' in problems["poll.fast_interval"].suggestion


def test_invalid_toml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[store]\npath = \n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "not valid TOML" in str(err.value) and "line 2" in str(err.value)


def test_unknown_env_override_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"FLEETWATCH_STORE_PAHT": "x.db"})
    assert "did you mean FLEETWATCH_STORE_PATH?" in str(err.value)


def test_check_prints_effective_config_with_secrets_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "xoxb-1111-2222-secretsecret"
    path = write(tmp_path, f'[slack]\nbot_token = "{token}"\n[smtp]\npassword = "hunter2-very-secret"\n')
    code = cli.main(["config", "check", str(path)], environ={"FLEETWATCH_LOG_LEVEL": "debug"})
    out = capsys.readouterr()
    assert code == 0
    assert token not in out.out + out.err and "hunter2-very-secret" not in out.out + out.err
    assert f'bot_token = "{REDACTED}"  # file' in out.out
    assert 'level = "DEBUG"  # env FLEETWATCH_LOG_LEVEL' in out.out
    assert 'webhook_url = ""  # default' in out.out


def test_check_fails_with_exit_code_2_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[stor]\npath = 'x'\n")
    code = cli.main(["config", "check", str(path)], environ={})
    out = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out.err and "stor.path" in out.err and "unknown setting" in out.err
