"""`chatd --version`, `chatcli --version` and `welcome.server`: one version, the package's."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from support import ChatClient, running_server

BIN = Path(sys.executable).parent
VERSION = metadata.version("chatd")


@pytest.mark.parametrize("program", [[str(BIN / "chatd")], [sys.executable, "-m", "chatd"],
                                     [str(BIN / "chatcli")], [sys.executable, "-m", "chatcli"]],
                         ids=["chatd", "python -m chatd", "chatcli", "python -m chatcli"])
def test_version_prints_the_package_metadata_version_and_exits_zero(program):
    done = subprocess.run([*program, "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    name = "chatcli" if "chatcli" in " ".join(program) else "chatd"
    assert done.stdout.strip() == f"{name} {VERSION}"


def test_chatcli_reads_the_version_without_importing_the_server_package():
    probe = ("import sys, chatcli.__main__ as m; v = m.client_version(); "
             "assert not any(n == 'chatd' or n.startswith('chatd.') for n in sys.modules), "
             "sorted(sys.modules); print(v)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == VERSION


def test_welcome_names_the_same_version():
    with running_server(store="memory") as server, \
            ChatClient(server.address, "alice") as alice:
        assert alice.welcome["server"] == f"chatd/{VERSION}"
