"""chatcli over TLS: the real client as a subprocess against an in-process chatd
serving TLS with a trustme certificate."""

import os
import subprocess
import sys

import pytest

from support import REPO, WAIT, CliProcess, TLSFiles, running_server


@pytest.fixture
def files(tmp_path):
    return TLSFiles(tmp_path)


def run_cli(port: int, *options: str, stdin: str = "", env=None):
    return subprocess.run([sys.executable, "-m", "chatcli", "--port", str(port), *options],
                          cwd=REPO, input=stdin, capture_output=True, text=True,
                          timeout=WAIT * 2, env={**os.environ, "NO_COLOR": "1", **(env or {})})


def test_send_and_pipe_mode_over_tls_with_cafile(files):
    with running_server(**files.settings()) as server:
        port = server.tls_address[1]
        result = run_cli(port, "--host", "localhost", "--cafile", files.ca_file,
                         "--name", "ann", "--send", "over tls")
        assert result.returncode == 0, result
        with CliProcess(port, "--host", "localhost", "--tls", "--cafile", files.ca_file,
                        "--name", "bob") as bob:
            bob.err.wait_for("connected as bob")
            bob.type("hello from a pipe")
            assert bob.finish() == 0
        assert bob.chat() == ["<bob> hello from a pipe"]
        # The environment says the same.
        result = run_cli(port, "--host", "localhost", "--name", "cyd", "--send", "env",
                         env={"CHATCLI_TLS": "1", "CHATCLI_CAFILE": files.ca_file})
        assert result.returncode == 0, result


def test_an_unknown_ca_exits_1_with_one_line(files, tmp_path):
    other = TLSFiles(tmp_path / "..", name="other")  # another CA altogether
    with running_server(**files.settings()) as server:
        result = run_cli(server.tls_address[1], "--host", "localhost", "--cafile",
                         other.ca_file, "--name", "ann", "--send", "hi")
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "certificate" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_tls_against_the_plaintext_port_fails_in_one_line(files):
    with running_server(**files.settings()) as server:
        result = run_cli(server.address[1], "--host", "localhost", "--cafile", files.ca_file,
                         "--name", "ann", "--send", "hi")
    assert result.returncode == 1, result
    assert "TLS" in result.stderr and "Traceback" not in result.stderr
