"""The test support itself works against a real server (in-process and subprocess)."""

from support import ChatClient, ServerProcess, running_server


def test_in_process_server_welcomes():
    with running_server() as server, ChatClient(server.address, "alice") as alice:
        assert alice.welcome["name"] == "alice"


def test_subprocess_server_exits_zero_on_sigterm():
    with ServerProcess() as server:
        with ChatClient((server.host, server.port), "bob") as bob:
            assert server.stop() == 0
            frames = bob.frames_until_close()
            assert frames[-1] == {"type": "bye", "reason": "shutdown"}
