"""SIGHUP: the settings are read again and applied live, all or nothing, through a real
chatd process and a real config file."""

import signal

import pytest

from chatd.config import Config
from chatd.reload import ReloadRefused, changes
from support import ChatClient, ServerProcess, wait_until
from test_systemd import NotifySocket


def reload(server: ServerProcess, expect: str) -> str:
    """SIGHUP, then the log line that says what the reload did."""
    def said():
        return [line for line in list(server.lines) if expect in line]
    count = len(said())
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: len(said()) > count, what=f"a log line with {expect!r}")
    return said()[-1]


def limits(server: ServerProcess, name: str) -> dict:
    with ChatClient((server.host, server.port), name) as client:
        return client.welcome["limits"]


def test_a_limit_changed_in_the_file_is_live_for_the_next_client(tmp_path):
    settings = tmp_path / "chatd.toml"
    settings.write_text("rate_limit = 5.0\npresence_limit = 50\n")
    with ServerProcess("--config", str(settings)) as server, \
            ChatClient((server.host, server.port), "early") as early:
        assert limits(server, "before")["rate"] == 5.0
        settings.write_text("rate_limit = 2.0\npresence_limit = 7\nidle_timeout = 60\n")
        line = reload(server, "reloaded:")
        assert "rate_limit 5.0 -> 2.0" in line and "presence_limit 50 -> 7" in line
        after = limits(server, "after")
        assert (after["rate"], after["presence_limit"], after["idle_timeout"]) == (2.0, 7, 60.0)
        early.send({"type": "ping", "ref": 1})  # connections made before go on
        assert early.next_of("pong")["ref"] == 1


def test_a_broken_file_or_a_fixed_setting_changes_nothing(tmp_path):
    settings = tmp_path / "chatd.toml"
    settings.write_text("rate_limit = 5.0\n")
    with ServerProcess("--config", str(settings)) as server:
        settings.write_text("rate_limit = \n")  # not TOML
        assert "not TOML" in reload(server, "reload refused")
        settings.write_text("rate_limit = 3.0\nhistory = 50\nmax_frame = 9000\n")
        line = reload(server, "reload refused")
        assert "history (1000 -> 50)" in line and "max_frame (65536 -> 9000)" in line
        settings.write_text("rate_limit = -1\n")
        assert "rate_limit must not be negative" in reload(server, "reload refused")
        assert limits(server, "still")["rate"] == 5.0  # all or nothing: none applied


def test_systemd_hears_reloading_then_ready(tmp_path):
    settings = tmp_path / "chatd.toml"
    settings.write_text("rate_limit = 5.0\n")
    with NotifySocket(abstract=False) as notify, \
            ServerProcess("--config", str(settings), env={"NOTIFY_SOCKET": notify.name}) as server:
        notify.next("READY")
        settings.write_text("rate_limit = 4.0\n")
        server.process.send_signal(signal.SIGHUP)
        reloading = notify.next("RELOADING")
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        assert notify.next("READY")["READY"] == "1"
        server.wait_for_log("reloaded: rate_limit 5.0 -> 4.0")


def test_a_refused_cluster_change_does_not_show_the_password():
    old = Config(cluster="redis://:first-secret@10.0.0.5:6379")
    new = Config(cluster="redis://:second-secret@10.0.0.6:6379")
    with pytest.raises(ReloadRefused) as refused:
        changes(old, new)
    message = str(refused.value)
    assert "secret" not in message
    assert "redis://:***@10.0.0.5:6379" in message and "10.0.0.6" in message
