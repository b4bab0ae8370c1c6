"""`--log-format json`: one JSON object a line, the text line's fields plus peer and reason."""

import json
import subprocess
import sys

from support import REPO, ChatClient, ServerProcess


def test_json_logs_are_one_object_a_line_with_peer_and_reason():
    with ServerProcess("--log-format", "json") as server:
        with ChatClient((server.host, server.port), "alice") as alice:
            peer = "127.0.0.1:%d" % alice.sock.getsockname()[1]
            alice.send({"type": "quit"})
            assert alice.frames_until_close()[-1] == {"type": "bye", "reason": "quit"}
        server.wait_for_log(r'"reason": "quit"')
        assert server.stop() == 0
        server.wait_for_log(r"disconnects by reason")
        lines = [json.loads(line) for line in server.lines]
    for line in lines:
        assert {"time", "level", "message"} <= line.keys() <= {
            "time", "level", "message", "peer", "reason", "exception"}, line
    messages = [line["message"] for line in lines]
    assert f"listening on 127.0.0.1:{server.port}" in messages
    opened = next(line for line in lines if line["message"] == f"open {peer}")
    assert opened["peer"] == peer and opened["level"] == "INFO" and "reason" not in opened
    closing = next(line for line in lines if line["message"].startswith(f"closing {peer}"))
    assert (closing["peer"], closing["reason"]) == (peer, "quit")
    assert messages[-1] == "disconnects by reason: quit=1"


def test_text_stays_the_default_and_a_bad_format_is_refused():
    with ServerProcess() as server:
        line = server.wait_for_log(r"listening on ")
        assert not line.startswith("{") and " INFO listening on 127.0.0.1:" in line
    done = subprocess.run([sys.executable, "-m", "chatd", "--log-format", "xml"], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == "chatd: log_format must be one of text, json"
