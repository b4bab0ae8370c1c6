"""`chatd --check-config`: the effective settings and their sources, exit 0 or 78.

Every test runs the real program (`python -m chatd`) with a clean CHATD_*
environment, and reads its output back as TOML.
"""

import os
import subprocess
import sys
import tomllib

import pytest

from chatd.config import Config, SETTINGS
from support import REPO

EXIT_CONFIG = 78


def check(*flags, env=None, timeout=30):
    clean = {name: value for name, value in os.environ.items()
             if not name.startswith("CHATD_")}
    return subprocess.run([sys.executable, "-m", "chatd", "--check-config", *flags],
                          cwd=REPO, env={**clean, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def sources(stdout: str) -> dict:
    return {line.split(" = ", 1)[0]: line.rsplit("  # ", 1)[1]
            for line in stdout.splitlines()}


def test_defaults_print_every_setting_from_default_and_exit_0():
    done = check()
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert tomllib.loads(done.stdout) == {name: getattr(Config(), name) for name in SETTINGS}
    assert sources(done.stdout) == {name: "default" for name in SETTINGS}


def test_each_value_names_where_it_came_from(tmp_path):
    settings = tmp_path / "chatd.toml"
    settings.write_text('rate_limit = 1.5\nmax-clients = 50\nhistory = 30\n'
                        'store = "/var/lib/chatd/chatd.db"\n')
    done = check("--config", str(settings), "--rate-limit", "0", "--history", "40",
                 env={"CHATD_MAX_CLIENTS": "60", "CHATD_IDLE_TIMEOUT": "12.5"})
    assert done.returncode == 0, done.stderr
    values, origin = tomllib.loads(done.stdout), sources(done.stdout)
    assert (values["rate_limit"], origin["rate_limit"]) == (0.0, "flag --rate-limit")
    assert (values["history"], origin["history"]) == (40, "flag --history")
    assert (values["max_clients"], origin["max_clients"]) == (60, "environment CHATD_MAX_CLIENTS")
    assert (values["idle_timeout"], origin["idle_timeout"]) == (
        12.5, "environment CHATD_IDLE_TIMEOUT")
    assert (values["store"], origin["store"]) == ("/var/lib/chatd/chatd.db",
                                                  f"file {settings}")
    assert (values["rate_burst"], origin["rate_burst"]) == (20, "default")


def test_a_cluster_password_is_not_printed():
    done = check(env={"CHATD_CLUSTER": "redis://chatd:s3cret@10.0.0.5:6380"})
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout
    assert tomllib.loads(done.stdout)["cluster"] == "redis://chatd:***@10.0.0.5:6380"
    assert sources(done.stdout)["cluster"] == "environment CHATD_CLUSTER (password hidden)"


def test_the_printed_settings_read_back_as_a_config_file_give_the_same_settings(tmp_path):
    first = check("--port", "0", "--log-level", "debug", "--store", "memory")
    assert first.returncode == 0, first.stderr
    kept = tmp_path / "kept.toml"
    kept.write_text(first.stdout)
    again = check("--config", str(kept))
    assert again.returncode == 0, again.stderr
    assert tomllib.loads(again.stdout) == tomllib.loads(first.stdout)
    assert set(sources(again.stdout).values()) == {f"file {kept}"}


def test_the_config_file_named_by_the_environment_is_read(tmp_path):
    settings = tmp_path / "chatd.toml"
    settings.write_text("port = 0\n")
    done = check(env={"CHATD_CONFIG": str(settings)})
    assert done.returncode == 0, done.stderr
    assert sources(done.stdout)["port"] == f"file {settings}"


@pytest.mark.parametrize("flags, env, toml, message", [
    (["--max-clients", "zero"], {}, None, "max_clients: 'zero' is not a valid int"),
    (["--history", "0", "--port", "70000"], {}, None, "history must be at least 1"),
    (["--log-level", "loud"], {}, None, "log_level must be one of"),
    ([], {"CHATD_RATE_LIMIT": "nan"}, None, "rate_limit must be a finite number"),
    ([], {}, "colour = 'red'\n", "unknown setting 'colour'"),
    ([], {}, "max_clients = \n", "not TOML"),
    (["--config", "/nonexistent/chatd.toml"], {}, None, "/nonexistent/chatd.toml"),
])
def test_a_bad_setting_is_exit_78_with_the_first_error_alone(tmp_path, flags, env, toml,
                                                             message):
    if toml is not None:
        settings = tmp_path / "chatd.toml"
        settings.write_text(toml)
        flags = [*flags, "--config", str(settings)]
    done = check(*flags, env=env)
    assert done.returncode == EXIT_CONFIG
    assert done.stdout == ""
    error = done.stderr.strip()
    assert error.startswith("chatd: ") and message in error, error
    assert len(error.splitlines()) == 1 and ";" not in error  # only the first problem


def test_a_normal_start_still_exits_2_on_a_bad_setting():
    clean = {name: value for name, value in os.environ.items()
             if not name.startswith("CHATD_")}
    done = subprocess.run([sys.executable, "-m", "chatd", "--history", "0"], cwd=REPO,
                          env=clean, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == "chatd: history must be at least 1"


def test_no_plaintext_is_a_switch_from_flag_environment_or_file_and_needs_tls(tmp_path):
    tls = ("--tls-port", "7879", "--tls-cert", "cert.pem", "--tls-key", "key.pem")
    refused = check("--no-plaintext")
    assert refused.returncode == EXIT_CONFIG
    assert refused.stderr == "chatd: no_plaintext needs TLS: set tls_cert and tls_key, " \
                             "and tls_port (or pass a socket named tls)\n"
    # Without tls_port the settings may still serve: systemd may pass a `tls`
    # socket (tests/test_systemd.py); a start without one is refused.
    assert check("--no-plaintext", *tls[2:]).returncode == 0
    clean = {name: value for name, value in os.environ.items()
             if not name.startswith("CHATD_")}
    started = subprocess.run([sys.executable, "-m", "chatd", "--no-plaintext", *tls[2:],
                              "--store", "memory"], cwd=REPO, env=clean,
                             capture_output=True, text=True, timeout=30)
    assert started.returncode == EXIT_CONFIG, started
    assert "no_plaintext needs a TLS listener: tls_port, or a socket systemd passes " \
           "named tls" in started.stderr and "Traceback" not in started.stderr
    by_flag = check("--no-plaintext", *tls)
    assert by_flag.returncode == 0, by_flag.stderr
    assert tomllib.loads(by_flag.stdout)["no_plaintext"] is True
    assert sources(by_flag.stdout)["no_plaintext"] == "flag --no-plaintext"
    by_environment = check(*tls, env={"CHATD_NO_PLAINTEXT": "yes"})
    assert tomllib.loads(by_environment.stdout)["no_plaintext"] is True
    assert check(*tls, env={"CHATD_NO_PLAINTEXT": "0"}).stdout.count(
        "no_plaintext = false") == 1
    settings = tmp_path / "chatd.toml"
    settings.write_text("no_plaintext = true\n")
    by_file = check("--config", str(settings), *tls)
    assert sources(by_file.stdout)["no_plaintext"] == f"file {settings}"
    unclear = check(*tls, env={"CHATD_NO_PLAINTEXT": "maybe"})
    assert unclear.returncode == EXIT_CONFIG
    assert "no_plaintext: 'maybe' is not yes or no" in unclear.stderr
    settings.write_text('no_plaintext = "sometimes"\n')
    assert check("--config", str(settings), *tls).returncode == EXIT_CONFIG
