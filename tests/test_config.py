"""chatd's settings: defaults, flags over environment over TOML file, and the
clear error (exit code 2) for a bad value."""

import os
import subprocess
import sys

import pytest

from chatd.__main__ import main
from chatd.config import Config, load_config
from support import REPO, ChatClient, ServerProcess

# The documented defaults, one per limit.
DEFAULTS = {
    "host": "127.0.0.1", "max_frame": 65_536, "max_clients": 10_000, "rate_limit": 10.0,
    "rate_burst": 20, "presence_limit": 200, "history": 1_000, "handshake_timeout": 10.0,
    "idle_timeout": 300.0, "output_hard_limit": 1 << 20, "output_soft_limit": 256 << 10,
    "output_soft_seconds": 10.0, "max_bad_messages": 20, "accepts_per_turn": 16,
    "write_per_turn": 64 << 10, "shutdown_timeout": 5.0, "log_level": "info",
}


def test_defaults_are_the_documented_limits():
    config = load_config([], environ={})
    assert config == Config()
    assert {name: getattr(config, name) for name in DEFAULTS} == DEFAULTS
    assert 1 <= config.port <= 65535


def test_flags_win_over_environment_over_file_over_defaults(tmp_path):
    settings = tmp_path / "chatd.toml"
    settings.write_text('rate_limit = 1.5\nmax-clients = 50\npresence_limit = 7\n'
                        'history = 30\n')
    config = load_config(
        ["--config", str(settings), "--rate-limit", "0", "--history", "40"],
        environ={"CHATD_RATE_LIMIT": "3", "CHATD_MAX_CLIENTS": "60",
                 "CHATD_IDLE_TIMEOUT": "12.5"})
    assert config.rate_limit == 0          # flag over environment and file
    assert config.history == 40            # flag over file
    assert config.max_clients == 60        # environment over file
    assert config.idle_timeout == 12.5     # environment over default
    assert config.presence_limit == 7      # file over default
    assert config.rate_burst == 20         # default


def test_the_config_file_can_come_from_the_environment(tmp_path):
    settings = tmp_path / "chatd.toml"
    settings.write_text("port = 0\nmax_frame = 10000\n")
    config = load_config([], environ={"CHATD_CONFIG": str(settings)})
    assert (config.port, config.max_frame) == (0, 10_000)


@pytest.mark.parametrize("argv, environ, toml, message", [
    (["--max-clients", "zero"], {}, None, "max_clients: 'zero' is not a valid int"),
    (["--max-clients", "0"], {}, None, "max_clients must be at least 1"),
    (["--rate-limit", "-1"], {}, None, "rate_limit must not be negative"),
    (["--rate-limit", "nan"], {}, None, "rate_limit must be a finite number"),
    (["--idle-timeout", "inf"], {}, None, "idle_timeout must be a finite number"),
    (["--max-frame", "100"], {}, None, "max_frame must be between 8192"),
    (["--port", "70000"], {}, None, "port must be between 0 and 65535"),
    (["--log-level", "loud"], {}, None, "log_level must be one of"),
    ([], {"CHATD_HISTORY": "many"}, None, "history: 'many' is not a valid int"),
    ([], {}, "max_clients = true\n", "max_clients: True is not a valid int"),
    ([], {}, "max_clients = 1.5\n", "max_clients: 1.5 is not a valid int"),
    ([], {}, "colour = 'red'\n", "unknown setting 'colour'"),
    ([], {}, "max_clients = \n", "chatd.toml"),  # not TOML
])
def test_a_bad_value_is_a_clear_error_and_exit_code_2(tmp_path, monkeypatch, capsys,
                                                      argv, environ, toml, message):
    if toml is not None:
        settings = tmp_path / "chatd.toml"
        settings.write_text(toml)
        argv = argv + ["--config", str(settings)]
    for name in [name for name in os.environ if name.startswith("CHATD_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("chatd: ") and message in error, error


def test_a_missing_config_file_is_exit_code_2(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in capsys.readouterr().err


def test_the_daemon_exits_2_with_the_message_on_a_bad_flag():
    result = subprocess.run([sys.executable, "-m", "chatd", "--max-frame", "big"], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == "chatd: max_frame: 'big' is not a valid int"
    unknown = subprocess.run([sys.executable, "-m", "chatd", "--no-such-flag"], cwd=REPO,
                             capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 2 and "--no-such-flag" in unknown.stderr


def test_port_0_picks_a_free_port_each_time():
    with ServerProcess() as first, ServerProcess() as second:
        assert 0 not in (first.port, second.port) and first.port != second.port
        for server in (first, second):
            with ChatClient((server.host, server.port), "alice") as alice:
                assert alice.welcome["name"] == "alice"


def test_a_running_daemon_takes_its_limits_from_file_environment_and_flags(tmp_path):
    settings = tmp_path / "chatd.toml"
    settings.write_text("max_frame = 10000\nrate_limit = 3\npresence_limit = 7\n")
    with ServerProcess("--config", str(settings), "--rate-limit", "4",
                       env={"CHATD_RATE_BURST": "5"}) as server, \
            ChatClient((server.host, server.port), "alice") as alice:
        limits = alice.welcome["limits"]
        assert (limits["max_frame"], limits["rate"], limits["burst"],
                limits["presence_limit"]) == (10_000, 4, 5, 7)


def test_web_settings_are_checked():
    assert Config(ws_port=8080, ws_origins=" https://a.example , http://b.example:81").web_origins() \
        == ["https://a.example", "http://b.example:81"]
    with pytest.raises(ValueError, match="ws_origins: 'https://a.example/page' is not an origin"):
        Config(ws_port=8080, ws_origins="https://a.example/page")
    with pytest.raises(ValueError, match="ws_port must be between 0 and 65535"):
        Config(ws_port=70000)
    with pytest.raises(ValueError, match="ws_port with TLS needs both tls_cert and tls_key"):
        Config(ws_port=8080, tls_cert="cert.pem")


def test_yes_no_settings_from_flags_environment_and_file(tmp_path):
    assert (Config().guests, Config().limit_loopback) == (True, False)
    assert load_config(["--limit-loopback"], environ={}).limit_loopback is True
    assert load_config(["--guests", "no"], environ={}).guests is False
    assert load_config([], environ={"CHATD_GUESTS": "No"}).guests is False
    settings = tmp_path / "chatd.toml"
    settings.write_text("guests = false\nlimit_loopback = true\n")
    config = load_config(["--config", str(settings)], environ={})
    assert (config.guests, config.limit_loopback) == (False, True)
    with pytest.raises(ValueError, match="guests: 'maybe' is not yes or no"):
        load_config(["--guests", "maybe"], environ={})
    settings.write_text("guests = 1\n")
    with pytest.raises(ValueError, match="is not yes or no"):
        load_config(["--config", str(settings)], environ={})
    with pytest.raises(ValueError, match="guests no needs accounts open or closed"):
        Config(guests=False, accounts="off")
