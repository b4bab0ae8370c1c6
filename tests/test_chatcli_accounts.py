"""chatcli and accounts, end to end: the real client as a subprocess against a real chatd.

Registering with /register (a terminal, and the next lines in pipe mode),
logging in with --password-file, CHATCLI_PASSWORD or an answer to the
password question, /passwd, and the private messages left while away shown
after login (welcome.conversations), also after a reconnect.  Every wait is
on output or a frame, with a timeout.
"""

import re

from support import WAIT, ChatClient, CliProcess, Relay, ServerProcess, running_server
from test_chatcli_e2e import Pty, run_cli

PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple"


def register(client: ChatClient, password: str = PASSWORD) -> None:
    client.send({"type": "register", "password": password, "ref": "r"})
    assert client.next(lambda m: m.get("ref") == "r")["type"] == "registered"


def password_file(tmp_path, password: str, name: str = "password") -> str:
    path = tmp_path / name
    path.write_text(password + "\n")
    path.chmod(0o600)
    return str(path)


def test_register_in_pipe_mode_then_log_in_with_the_file_and_the_environment(
        tmp_path, monkeypatch):
    with running_server() as server:
        port = server.address[1]
        made = run_cli(port, "--name", "alice", stdin=f"/register\n{PASSWORD}\n{PASSWORD}\n")
        assert made.returncode == 0, made
        assert "alice is now your account" in made.stdout
        assert PASSWORD not in made.stdout + made.stderr

        # The name is an account now: a guest is refused, and without a
        # terminal nobody can answer a question, so one line says what to give.
        guest = run_cli(port, "--name", "alice", "--send", "as a guest")
        assert guest.returncode == 1
        assert "auth_required" in guest.stderr
        assert ("alice is an account: give its password with --password-file FILE or "
                "CHATCLI_PASSWORD") in guest.stderr

        with ChatClient(server.address, "watcher") as watcher:
            from_file = run_cli(port, "--name", "alice", "--password-file",
                                password_file(tmp_path, PASSWORD), "--send", "from the file")
            assert from_file.returncode == 0, from_file
            assert watcher.next_of("msg")["text"] == "from the file"

            monkeypatch.setenv("CHATCLI_PASSWORD", PASSWORD)
            piped = run_cli(port, "--name", "alice", stdin="from the environment\n")
            assert piped.returncode == 0, piped
            assert watcher.next_of("msg")["text"] == "from the environment"

            # The file wins over the environment, and a wrong one is one line, exit 1.
            wrong = run_cli(port, "--name", "alice", "--password-file",
                            password_file(tmp_path, "not the password"), "--send", "x")
            assert wrong.returncode == 1
            assert "cannot log in as alice: wrong name or password" in wrong.stderr
        assert PASSWORD not in piped.stdout + piped.stderr


def test_bad_password_sources_are_usage_errors_before_connecting(tmp_path, monkeypatch):
    # No server: each is refused before any connection is tried.
    missing = run_cli(1, "--name", "a", "--password-file", str(tmp_path / "absent"))
    assert missing.returncode == 2
    assert "--password-file" in missing.stderr and "No such file" in missing.stderr
    short = run_cli(1, "--name", "a", "--password-file", password_file(tmp_path, "short"))
    assert short.returncode == 2
    assert "a password is 8 to 1,024 characters, not 5" in short.stderr
    monkeypatch.setenv("CHATCLI_PASSWORD", "x" * 1025)
    too_long = run_cli(1, "--name", "a")
    assert too_long.returncode == 2
    assert "CHATCLI_PASSWORD: a password is 8 to 1,024 characters, not 1025" in too_long.stderr


def test_a_pipe_register_with_different_or_missing_answers_sends_nothing():
    with running_server() as server:
        port = server.address[1]
        result = run_cli(port, "--name", "alice",
                         stdin=f"/register\n{PASSWORD}\nsomething else\nhello\n")
        assert result.returncode == 1  # the refused /register
        assert "/register: the two new passwords differ; nothing sent" in result.stderr
        assert re.search(r"<alice> hello$", result.stdout, re.M)
        cut_short = run_cli(port, "--name", "alice", stdin=f"/register\n{PASSWORD}\n")
        assert cut_short.returncode == 1
        assert "/register cancelled; nothing sent" in cut_short.stderr
        # Not registered: a guest may take the name again.
        with ChatClient(server.address, "alice") as again:
            assert "account" not in again.welcome


def test_terminal_register_hides_the_password_and_checks_it_twice():
    with running_server() as server:
        terminal = Pty(server.address[1], "--name", "alice")
        try:
            terminal.wait_for_row(r"connected as alice")
            terminal.type("/register\r")
            terminal.wait_for(lambda screen: screen.rows[-1] == "new password: ")
            terminal.type(PASSWORD + "\r")
            terminal.wait_for(lambda screen: screen.rows[-1] == "new password again: ")
            terminal.type("a different one\r")
            terminal.wait_for_row(r"the two new passwords differ; nothing sent")
            terminal.wait_for(lambda screen: screen.rows[-1] == "#lobby> ")
            terminal.type("/register\r")
            terminal.wait_for(lambda screen: screen.rows[-1] == "new password: ")
            terminal.type(PASSWORD + "\r")
            terminal.wait_for(lambda screen: screen.rows[-1] == "new password again: ")
            terminal.type(PASSWORD + "\r")
            terminal.wait_for_row(r"alice is now your account")
            # Nothing typed at the questions ever reached the screen, and
            # Up does not recall it.
            assert PASSWORD.encode() not in terminal.raw
            terminal.type("\x1b[A")
            terminal.wait_for(lambda screen: screen.rows[-1] == "#lobby> /register")
            terminal.type("\x15\x03")  # Ctrl-U, Ctrl-C
            assert terminal.process.wait(WAIT) == 0
        finally:
            terminal.close()
        with ChatClient(server.address) as guest:
            guest.send({"type": "hello", "name": "alice"})
            assert guest.next_of("error")["code"] == "auth_required"


def test_terminal_asks_for_the_password_retries_and_changes_it(tmp_path):
    with running_server() as server:
        with ChatClient(server.address, "alice") as alice:
            register(alice)
        terminal = Pty(server.address[1], "--name", "alice")
        try:
            terminal.wait_for(lambda screen: screen.rows[-1]
                              == "password for alice (empty: another name): ")
            assert any("auth_required" in row for row in terminal.screen.rows)
            terminal.type("wrong password\r")
            terminal.wait_for_row(r"auth_failed: wrong name or password")
            terminal.wait_for(lambda screen: screen.rows[-1]
                              == "password for alice (empty: another name): ")
            terminal.type(PASSWORD + "\r")
            terminal.wait_for_row(r"connected as alice, logged in \(")
            terminal.type("/passwd\r")
            terminal.wait_for(lambda screen: screen.rows[-1] == "current password: ")
            terminal.type(PASSWORD + "\r")
            terminal.wait_for(lambda screen: screen.rows[-1] == "new password: ")
            terminal.type(NEW_PASSWORD + "\r")
            terminal.wait_for(lambda screen: screen.rows[-1] == "new password again: ")
            terminal.type(NEW_PASSWORD + "\r")
            terminal.wait_for_row(r"\* password changed")
            assert PASSWORD.encode() not in terminal.raw
            assert NEW_PASSWORD.encode() not in terminal.raw
            terminal.type("\x03")
            assert terminal.process.wait(WAIT) == 0
        finally:
            terminal.close()
        old = run_cli(server.address[1], "--name", "alice", "--password-file",
                      password_file(tmp_path, PASSWORD), "--send", "x")
        assert old.returncode == 1 and "wrong name or password" in old.stderr
        new = run_cli(server.address[1], "--name", "alice", "--password-file",
                      password_file(tmp_path, NEW_PASSWORD), "--send", "with the new one")
        assert new.returncode == 0, new


def test_terminal_gives_up_after_three_wrong_passwords():
    with running_server() as server:
        with ChatClient(server.address, "alice") as alice:
            register(alice)
        terminal = Pty(server.address[1], "--name", "alice")
        try:
            for tries in range(1, 4):
                terminal.wait_for(lambda screen: screen.rows[-1]
                                  == "password for alice (empty: another name): ")
                terminal.type("wrong password\r")
                terminal.wait_for(lambda screen: sum("auth_failed" in row for row in screen.rows)
                                  == tries)
            assert terminal.process.wait(WAIT) == 1
            terminal.wait_for_row(r"cannot log in as alice: wrong name or password 3 times")
        finally:
            terminal.close()


def test_an_empty_answer_to_the_password_question_picks_another_name():
    with running_server() as server:
        with ChatClient(server.address, "alice") as alice:
            register(alice)
        terminal = Pty(server.address[1], "--name", "alice")
        try:
            terminal.wait_for(lambda screen: screen.rows[-1]
                              == "password for alice (empty: another name): ")
            terminal.type("\r")
            terminal.wait_for(lambda screen: screen.rows[-1] == "username: ")
            terminal.type("carol\r")
            terminal.wait_for_row(r"connected as carol")
        finally:
            terminal.close()


def leave_dms_for_offline_bob(server, *texts: str) -> None:
    with ChatClient(server.address, "alice") as alice, \
            ChatClient(server.address, "bob") as bob:
        register(alice)
        register(bob)
        bob.send({"type": "quit"})
        bob.frames_until_close()
        for number, text in enumerate(texts):
            alice.send({"type": "dm", "to": "bob", "text": text, "ref": number})
            assert alice.next(lambda m: m.get("ref") == number)["type"] == "msg"


def test_private_messages_sent_while_away_are_shown_after_login(monkeypatch):
    with running_server() as server:
        leave_dms_for_offline_bob(server, "while you were away", "and again")
        monkeypatch.setenv("CHATCLI_PASSWORD", PASSWORD)
        bob = run_cli(server.address[1], "--name", "bob", stdin="")
        assert bob.returncode == 0, bob
        assert re.findall(r"^\d\d:\d\d (.*)$", bob.stdout, re.M) == [
            "*alice* while you were away", "*alice* and again"]


def test_private_messages_missed_during_a_drop_are_shown_once_after_the_reconnect(
        monkeypatch):
    with running_server() as server:
        leave_dms_for_offline_bob(server, "before")
        proxy = Relay(server.address)
        monkeypatch.setenv("CHATCLI_PASSWORD", PASSWORD)
        try:
            with CliProcess(proxy.port, "--name", "bob") as bob, \
                    ChatClient(server.address) as alice:
                bob.out.wait_for(r"\*alice\* before$")
                alice.hello("alice", password=PASSWORD)
                alice.send({"type": "dm", "to": "bob", "text": "seen live", "ref": 1})
                bob.out.wait_for(r"\*alice\* seen live$")
                proxy.cut(proxy.link_of("bob"))
                # The server still holds bob's old connection: this reaches
                # the relay's dead end, never bob; only the catch-up shows it.
                alice.send({"type": "dm", "to": "bob", "text": "missed", "ref": 2})
                bob.err.wait_for(r"reconnected as bob")
                bob.out.wait_for(r"\*alice\* missed$")
                alice.send({"type": "dm", "to": "bob", "text": "after", "ref": 3})
                bob.out.wait_for(r"\*alice\* after$")
                assert bob.finish() == 0
                assert [line[6:] for line in bob.out.lines if re.match(r"\d\d:\d\d \*\w", line)] \
                    == ["*alice* before", "*alice* seen live", "*alice* missed", "*alice* after"]
        finally:
            proxy.close()


def test_after_a_server_restart_the_registered_account_logs_in_again_by_itself(tmp_path):
    store = str(tmp_path / "chatd.db")
    with ServerProcess("--store", store) as first:
        port = first.port
        with CliProcess(port, "--name", "alice") as alice:
            alice.type("/register", PASSWORD, PASSWORD)
            alice.out.wait_for("alice is now your account")
            assert first.stop() == 0
            alice.err.wait_for("server closed the connection: shutdown")
            # The new server knows the account but not the old session's
            # token: only the password /register kept gets alice back in.
            with ServerProcess("--store", store, "--port", str(port)) as second, \
                    ChatClient((second.host, second.port), "bob") as bob:
                alice.err.wait_for(r"reconnected as alice")
                alice.type("back")
                assert bob.next_of("msg")["text"] == "back"
                assert alice.finish() == 0
        assert not any("auth_" in line for line in alice.err.lines)


def test_a_second_run_shows_only_the_private_messages_the_first_did_not(
        monkeypatch, tmp_path):
    monkeypatch.setenv("CHATCLI_STATE", str(tmp_path / "state" / "seen.json"))
    monkeypatch.setenv("CHATCLI_PASSWORD", PASSWORD)
    with running_server() as server:
        leave_dms_for_offline_bob(server, "first")
        bob = run_cli(server.address[1], "--name", "bob", stdin="")
        assert re.findall(r"^\d\d:\d\d (.*)$", bob.stdout, re.M) == ["*alice* first"]
        assert (tmp_path / "state" / "seen.json").stat().st_mode & 0o777 == 0o600
        again = run_cli(server.address[1], "--name", "bob", stdin="")
        assert again.returncode == 0, again
        assert re.findall(r"^\d\d:\d\d (.*)$", again.stdout, re.M) == []
        with ChatClient(server.address, "alice", password=PASSWORD) as alice:
            alice.send({"type": "dm", "to": "bob", "text": "second", "ref": 1})
            assert alice.next(lambda m: m.get("ref") == 1)["type"] == "msg"
        third = run_cli(server.address[1], "--name", "bob", stdin="")
        assert re.findall(r"^\d\d:\d\d (.*)$", third.stdout, re.M) == ["*alice* second"]


def test_a_guests_dm_to_an_offline_account_is_shown_at_its_login(monkeypatch):
    with running_server() as server:
        with ChatClient(server.address, "bob") as bob:
            register(bob)
        with ChatClient(server.address, "dave") as dave:  # a guest, gone after this
            dave.send({"type": "dm", "to": "bob", "text": "you there?", "ref": 1})
            assert dave.next(lambda m: m.get("ref") == 1)["type"] == "msg"
        monkeypatch.setenv("CHATCLI_PASSWORD", PASSWORD)
        bob = run_cli(server.address[1], "--name", "bob", stdin="")
        assert bob.returncode == 0, bob
        assert re.findall(r"^\d\d:\d\d (.*)$", bob.stdout, re.M) == ["*dave* you there?"]
        assert "no_such_user" not in bob.stderr
