"""The command line as a new user meets it (issue 21): no credentials, a configuration that
notifies nobody, output piped into `head`, a read command run where there is no store, a busy
port, a role that cannot be assumed, a TOML slip, a duration with no unit, a secret in the file,
and `--help` for every argument. Each runs the real CLI: in a subprocess where the process's own
behaviour is the point (exit status, stdout closed, no credentials), else through main()."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleetwatch import cli
from fleetwatch.config import SETTINGS, ConfigError, load_config
from tests.agent_kit import agent_env, spawn_run
from tests.conftest import CREDS, ROLES, control

ROOT = Path(__file__).resolve().parent.parent


def fleetwatch(*args: str, env: dict[str, str], cwd: Path = ROOT, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetwatch.cli", *args],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 120),
        **kw,
    )


def no_aws(tmp_path: Path) -> dict[str, str]:
    """An environment with no AWS credentials anywhere boto3 looks: no variables, no files, and the
    instance metadata lookup off (it would otherwise reach for 169.254.169.254)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "FLEETWATCH_STORE_PATH": str(tmp_path / "fw.db"),
        "FLEETWATCH_LOG_FORMAT": "text",
    }


# -- AWS access ---------------------------------------------------------------------------------


def test_run_without_credentials_fails_at_start_naming_the_fix(tmp_path: Path) -> None:
    proc = fleetwatch("run", "--no-dashboard", env=no_aws(tmp_path), timeout=60)  # ran for ever, one warning a minute
    assert proc.returncode == 2, proc.stderr[-2000:]
    for fix in ("profile", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "instance role"):
        assert fix in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "poll finished" not in proc.stderr, "nothing is polled"
    # As docker-compose.yml passes them when the host has none: empty, which is none (not a profile named '').
    empty = {"AWS_PROFILE": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""}
    proc = fleetwatch("run", "--no-dashboard", env={**no_aws(tmp_path), **empty}, timeout=60)
    assert proc.returncode == 2 and "no AWS credentials found" in proc.stderr, proc.stderr
    missing = fleetwatch(
        "run", "--no-dashboard", env={**no_aws(tmp_path), "FLEETWATCH_AWS_PROFILE": "nosuch"}, timeout=60
    )
    assert missing.returncode == 2 and "'nosuch'" in missing.stderr and "aws configure --profile" in missing.stderr


def test_plan_and_collect_without_credentials_say_the_fix_and_fail(tmp_path: Path) -> None:
    for command in (["plan"], ["collect", "--once"]):
        proc = fleetwatch(*command, env=no_aws(tmp_path), timeout=60)
        assert proc.returncode == 2 and "AWS_ACCESS_KEY_ID" in proc.stderr and "Traceback" not in proc.stderr, (
            proc.stderr
        )


def test_run_stops_when_its_first_poll_reads_nothing_but_rides_out_one_failing_source(
    fleet: Any, tmp_path: Path
) -> None:
    env = agent_env(fleet, tmp_path / "fw.db", FLEETWATCH_LOG_FORMAT="text")
    # One service refusing (Lambda in the home account): the agent carries on with the rest.
    control(
        fleet,
        "/__fleet__/faults",
        [{"service": "lambda", "mode": "error", "code": "AccessDeniedException", "status": 403}],
    )
    try:
        proc = spawn_run(env, "--polls", "2", "--no-dashboard", "--emulated-clock")
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        assert err.count("poll finished") == 2 and "AccessDeniedException" in err
        # Every call refused, STS included (a principal with no permission at all): the first poll
        # reads nothing and the agent stops, with AWS's error and the policy that fixes it.
        control(fleet, "/__fleet__/faults", [{"mode": "error", "code": "AccessDenied", "status": 403}])
        proc = spawn_run(
            {**env, "FLEETWATCH_STORE_PATH": str(tmp_path / "second.db")},
            "--polls",
            "5",
            "--no-dashboard",
            "--emulated-clock",
        )
        _, err = proc.communicate(timeout=240)
    finally:
        control(fleet, "/__fleet__/faults", [])
    assert proc.returncode == 2, err[-3000:]
    assert err.count("poll finished") == 1 and "could not read anything from AWS" in err
    assert "AccessDenied" in err and "iam/fleetwatch-readonly-policy.json" in err


def test_plan_with_a_role_it_cannot_assume_says_so_and_fails(
    fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDS["aws_secret_access_key"])
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    env = {
        "FLEETWATCH_STORE_PATH": str(tmp_path / "fw.db"),
        "FLEETWATCH_AWS_ENDPOINT_URL": fleet.endpoint,
        "FLEETWATCH_AWS_REGIONS": "us-east-1",
        "FLEETWATCH_AWS_ROLE_ARNS": ",".join(ROLES),
    }
    assert cli.main(["plan"], environ=env) == 0
    capsys.readouterr()
    # The roles cannot be assumed any more: the plan of what the store holds is printed, but the
    # command fails and says where and why (it printed "error ERROR AssumeRoleError" and exited 0).
    control(
        fleet,
        "/__fleet__/faults",
        [
            {
                "service": "sts",
                "operation": "AssumeRole",
                "mode": "error",
                "code": "AccessDenied",
                "status": 403,
                "message": "not authorized to perform sts:AssumeRole",
            }
        ],
    )
    try:
        status = cli.main(["plan"], environ=env)
    finally:
        control(fleet, "/__fleet__/faults", [])
    out, err = capsys.readouterr()
    assert status == 1, "a plan that could not reach an account is not a success"
    assert "ERROR" not in out and "AssumeRoleError" not in out + err
    assert re.search(
        r"discovery 210987654321/us-east-1 failed: cannot assume arn:aws:iam::210987654321:role/fleetwatch-reader: "
        r".*AccessDenied.*Check that the role exists",
        out,
    ), out
    assert "GetMetricData calls per poll" in out, "what the store holds is still planned"
    assert "discovery failed in 2 place(s) (123456789012/us-east-1, 210987654321/us-east-1)" in err
    assert "covers only the resources the store already holds" in err


# -- output and the store -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["incidents", "--all"], ["silence", "list"], ["config", "docs"], ["store", "info"], ["--help"]]
)
def test_output_cut_short_by_its_reader_ends_quietly(command: list[str], tmp_path: Path) -> None:
    """`fleetwatch incidents | head`: the reader goes away; the command ends without a traceback.
    The pipe's read end is closed before the command writes, so every write meets it closed."""
    env = {"PATH": "/usr/bin:/bin", "FLEETWATCH_STORE_PATH": str(tmp_path / "fw.db")}
    assert fleetwatch("store", "info", env=env).returncode == 0  # the store the read commands read
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetwatch.cli", *command],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141, "as a command killed by SIGPIPE"


@pytest.mark.parametrize(
    "command",
    [
        ["incidents"],
        ["ack", "1", "--by", "me"],
        ["silence", "list"],
        ["detect"],
        ["digest", "--send"],
        ["serve"],
        ["plan", "--no-discover"],
    ],
)
def test_a_read_command_with_no_store_names_the_store_and_the_fix(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(*args: str) -> str:
        if command[0] == "serve":  # a subprocess: before the fix it served an empty store for ever
            proc = fleetwatch(*args, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, timeout=60)
            assert proc.returncode == 2, proc.stderr
            return proc.stderr
        assert cli.main(list(args), environ={}) == 2
        return capsys.readouterr().err

    monkeypatch.chdir(tmp_path)
    err = fails(*command)
    assert f"no store at {tmp_path / 'fleetwatch.db'} (the default store.path)" in err
    assert "--config FILE" in err and "FLEETWATCH_STORE_PATH" in err
    assert not (tmp_path / "fleetwatch.db").exists(), "no empty store is made to answer from"
    other = tmp_path / "elsewhere.toml"
    other.write_text(f'[store]\npath = "{tmp_path / "agent.db"}"\n')
    assert f"store.path in {other}" in fails(*command, "--config", str(other))


def test_run_with_the_dashboard_port_taken_names_options_that_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDS["aws_secret_access_key"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status = cli.main(
            ["run", "--polls", "1"],
            environ={
                "FLEETWATCH_STORE_PATH": str(tmp_path / "fw.db"),
                "FLEETWATCH_WEB_PORT": str(port),
                "FLEETWATCH_LOG_FORMAT": "text",
                "FLEETWATCH_AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            },
        )
    err = capsys.readouterr().err
    assert (
        status == 2 and f"port {port} on 127.0.0.1 is already in use" in err and "web.port (FLEETWATCH_WEB_PORT)" in err
    )
    run = _subparsers(cli._parser())["run"]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", err))
    assert named and named <= {o for a in run._actions for o in a.option_strings}, f"{named} must all be options of run"


# -- the configuration ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleetwatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_warns_of_a_configuration_that_notifies_nobody(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["config", "check", "--config", str(write(tmp_path, '[store]\npath = "x.db"\n'))], environ={}) == 0
    assert "notifies nobody" in capsys.readouterr().err
    # A channel named with nothing to send through it is nobody either, and each such target is named.
    assert (
        cli.main(["config", "check", "--config", str(write(tmp_path, '[slack]\nchannel = "#oncall"\n'))], environ={})
        == 0
    )
    err = capsys.readouterr().err
    assert "notifies nobody" in err and "slack:#oncall is a target, but nothing sends to slack" in err
    assert (
        cli.main(
            ["config", "check", "--config", str(tmp_path / "fleetwatch.toml")],
            environ={"FLEETWATCH_SLACK_BOT_TOKEN": "xoxb-from-the-environment"},
        )
        == 0
    )
    assert "warning" not in capsys.readouterr().err
    routed = write(tmp_path, '[alerts]\nroutes = ["severity=critical -> pagerduty:default"]\n')
    assert (
        cli.main(
            ["config", "check", "--config", str(routed)], environ={"FLEETWATCH_PAGERDUTY_ROUTING_KEY": "R0UTINGKEY"}
        )
        == 0
    )
    assert "notifies nobody" not in capsys.readouterr().err


def test_check_takes_config_like_every_command_and_the_old_positional_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[store]\npath = "elsewhere.db"\n')
    assert cli.main(["config", "check", "--config", str(path)], environ={}) == 0
    out, err = capsys.readouterr()
    assert 'path = "elsewhere.db"  # file' in out and "deprecated" not in err
    assert cli.main(["config", "check", str(path)], environ={}) == 0
    out, err = capsys.readouterr()
    assert 'path = "elsewhere.db"  # file' in out and "`config check --config FILE`" in err


def test_a_toml_error_at_the_end_of_the_file_still_gives_its_line_and_column(tmp_path: Path) -> None:
    # tomllib says "(at end of document)" for what runs off the end: no line, no column.
    path = write(
        tmp_path, '[slack]\nchannel = "#oncall"\n[alerts]\nroutes = [\n  "severity=critical -> slack:#oncall",\n\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "line 5, column 40: '\"severity=critical -> slack:#oncall\",': Invalid value" in str(err.value)
    assert "never closed" in str(err.value)
    path = write(tmp_path, "[store]\npath = \n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "line 2, column 8: 'path =': Invalid value" in str(err.value)


DURATIONS = [s for s in SETTINGS if s.kind == "duration"]


@pytest.mark.parametrize("s", DURATIONS, ids=lambda s: s.key)
def test_a_duration_with_no_unit_is_refused_with_the_fix(s: Any, tmp_path: Path) -> None:
    section, _, leaf = s.key.rpartition(".")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"[{section}]\n{leaf} = 3\n"), environ={})
    (problem,) = err.value.problems
    assert problem.key == s.key and "no unit" in problem.message
    assert f'{leaf} = "3s", "3m", "3h" or "3d"' in problem.suggestion
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={s.env: "3"})
    assert f"{s.env}=3s, 3m, 3h or 3d" in str(err.value)
    zero_ok = s.minimum is not None and s.minimum <= 0
    if zero_ok:  # zero is zero in any unit
        assert load_config(write(tmp_path, f"[{section}]\n{leaf} = 0\n"), environ={})[s.key] == 0


SECRETS = {
    "web.token": "web-token-0123456789",
    "web.password": "hunter2-hunter2",
    "slack.bot_token": "xoxb-1111-2222-abcdefabcdef",
    "slack.webhook_url": "https://hooks.slack.com/services/T0AAAA/B0BBBB/abcdefghijklmnop1234",
    "smtp.password": "smtp-pw-0123",
    "pagerduty.routing_key": "R0UTINGKEY0123456789abcdef012345",
    "pagerduty.webhook_secret": "pd-signing-secret-0123",
    "webhook.token": "bearer-0123456789",
    "webhook.urls": ["bot=https://hooks.example.com/fleetwatch?key=abc123"],
    "store.url": "postgresql://fleetwatch:pg-pw-0123456789@db.example.com:5432/fleetwatch",
}


def test_every_secret_setting_has_a_sample() -> None:
    assert set(SECRETS) == {s.key for s in SETTINGS if s.secret}


@pytest.mark.parametrize("key", sorted(SECRETS))
def test_a_secret_in_the_file_is_accepted_with_a_warning_naming_its_variable(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section, _, leaf = key.rpartition(".")
    value = SECRETS[key]
    literal = "[" + ", ".join(f'"{v}"' for v in value) + "]" if isinstance(value, list) else f'"{value}"'
    path = write(tmp_path, f"[{section}]\n{leaf} = {literal}\n")
    assert cli.main(["config", "check", "--config", str(path)], environ={}) == 0
    out, err = capsys.readouterr()
    env = "FLEETWATCH_" + key.replace(".", "_").upper()
    assert f"{key} is written in {path}: secrets belong in the environment" in err and f"set {env}=" in err
    assert str(value[0] if isinstance(value, list) else value) not in out + err, (
        "the warning does not repeat the secret"
    )


def test_a_webhook_url_with_nothing_secret_in_it_is_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[webhook]\nurls = ["bot=https://hooks.example.com/fleetwatch"]\n')
    assert cli.main(["config", "check", "--config", str(path)], environ={}) == 0
    assert "secrets belong" not in capsys.readouterr().err


def test_run_logs_the_configuration_warnings_at_start(tmp_path: Path) -> None:
    path = write(tmp_path, '[slack]\nbot_token = "xoxb-1111-2222-abcdefabcdef"\nchannel = "#oncall"\n')
    # no credentials: run stops right after the warnings, which are logged before anything starts
    proc = fleetwatch("run", "--config", str(path), env={**no_aws(tmp_path)}, timeout=60)
    assert "slack.bot_token is written in" in proc.stderr and "FLEETWATCH_SLACK_BOT_TOKEN" in proc.stderr
    assert "xoxb-1111-2222-abcdefabcdef" not in proc.stderr


# -- help ----------------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _walk(parser: argparse.ArgumentParser, path: str = "fleetwatch") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += _walk(sub, f"{path} {name}")
    return out


def test_help_describes_every_argument_of_every_command() -> None:
    missing = []
    walked = _walk(cli._parser())
    for path, parser in walked:
        for a in parser._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
                continue
            if isinstance(a, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in a._choices_actions if not c.help]
            elif not a.help or a.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")
    assert len(walked) > 20 and missing == [], f"arguments without help: {missing}"


def test_every_command_that_reads_the_configuration_takes_config_the_same_way() -> None:
    no_config = {"fleetwatch config docs", "fleetwatch replay", "fleetwatch emulate", "fleetwatch demo"}
    for path, parser in _walk(cli._parser()):
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions) or path in no_config:
            continue
        (config,) = [a for a in parser._actions if "--config" in a.option_strings] or [None]
        assert config is not None and config.metavar == "FILE" and config.help == cli.CONFIG_HELP, f"{path} --config"


def test_run_serves_the_dashboard_on_the_port_given(fleet: Any, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = spawn_run(
        agent_env(fleet, tmp_path / "fw.db", FLEETWATCH_LOG_FORMAT="text"),
        "--polls",
        "1",
        "--port",
        str(port),
        "--emulated-clock",
    )
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0 and f"dashboard on http://127.0.0.1:{port}" in err, err[-2000:]
    assert os.path.exists(tmp_path / "fw.db")
