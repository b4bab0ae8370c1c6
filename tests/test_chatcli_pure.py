"""chatcli's pure pieces: the options, command parser, display lines, key decoder, line editor."""

import random
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

import framing
import pytest

from chatcli import commands, display, seen
from chatcli.__main__ import parse_arguments
from chatcli.client import BACKOFF_CAP, BACKOFF_FIRST, backoff_delay
from chatcli.editor import LineEditor, text_width
from chatcli.keys import Key, KeyDecoder
from chatcli.passwords import Dialog, read_password_file

from support import REPO

# ------------------------------------------------------------------- options


def test_unconfigured_chatcli_finds_an_unconfigured_chatd():
    from chatd.config import Config  # the test may look; chatcli itself must not
    arguments = parse_arguments([], {})
    assert (arguments.host, arguments.port) == (Config.host, Config.port)
    assert arguments.port == framing.DEFAULT_PORT


def test_chatcli_does_not_import_chatd():
    # A fresh interpreter: this one has chatd loaded by the other tests.
    probe = ("import sys, chatcli.__main__; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'chatd'))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                            text=True, check=True, cwd=REPO, timeout=60)
    assert result.stdout.strip() == "[]"


def test_keepalive_is_a_number_of_seconds_of_at_least_one():
    assert parse_arguments([], {}).keepalive == 20.0
    assert parse_arguments(["--keepalive", "2.5"], {}).keepalive == 2.5
    assert parse_arguments([], {"CHATCLI_KEEPALIVE": "7"}).keepalive == 7.0
    for bad in ("0.5", "nan", "inf", "soon"):
        try:
            parse_arguments(["--keepalive", bad], {})
        except SystemExit as exit:
            assert exit.code == 2
        else:
            raise AssertionError(f"--keepalive {bad} accepted")

# ------------------------------------------------------------------- backoff


@given(st.integers(min_value=1, max_value=100_000), st.integers(min_value=0))
def test_reconnect_delays_stay_under_the_capped_exponential_bound(failures, seed):
    # 1,100 failures is about 4 h of a server down: the bound must not
    # overflow a float on the way to the cap.
    bound = BACKOFF_CAP if failures > 20 else min(BACKOFF_CAP,
                                                  BACKOFF_FIRST * 2 ** (failures - 1))
    assert 0.0 <= backoff_delay(failures, random.Random(seed)) <= bound


def test_reconnect_delays_are_spread_over_the_whole_bound():
    rng = random.Random(15)
    for failures, bound in ((1, 0.25), (4, 2.0), (9, 30.0), (5000, 30.0)):
        delays = [backoff_delay(failures, rng) for _ in range(1000)]
        # Uniform on [0, bound]: each tenth of it holds about 100 of 1,000.
        tenths = [0] * 10
        for delay in delays:
            tenths[min(9, int(delay / bound * 10))] += 1
        assert all(50 <= count <= 150 for count in tenths), (failures, tenths)

# ------------------------------------------------------------------ commands


def test_plain_text_is_said_and_double_slash_escapes_a_command():
    assert commands.parse("hello\n") == commands.Say("hello")
    assert commands.parse("//join is a command") == commands.Say("/join is a command")
    assert commands.parse("   ") is None


def test_every_command_parses():
    parse = commands.parse
    assert parse("/join #dev") == commands.Join("dev")
    assert parse("/leave") == commands.Leave(None)
    assert parse("/leave dev") == commands.Leave("dev")
    assert parse("/msg bob hi there") == commands.Msg("bob", "hi there")
    assert parse("/nick carol") == commands.Nick("carol")
    assert parse("/who") == commands.Who(None)
    assert parse("/rooms") == commands.Rooms()
    assert parse("/history 5") == commands.History(5)
    assert parse("/history") == commands.History(None)
    assert parse("/quit bye all") == commands.Quit("bye all")
    assert parse("/HELP") == commands.Help()
    assert parse("/register") == commands.Register()
    assert parse("/passwd") == commands.Passwd()


def test_bad_commands_are_invalid_with_a_reason():
    for line, words in [("/frobnicate", "unknown command /frobnicate"),
                        ("/join", "usage: /join ROOM"),
                        ("/join bad room", "usage"),
                        ("/join caf\u00e9", "bad room name"),
                        ("/msg bob", "usage: /msg NAME TEXT"),
                        ("/nick a b", "usage: /nick NAME"),
                        ("/history 0", "usage: /history"),
                        ("/history x", "usage: /history"),
                        ("/rooms now", "usage: /rooms"),
                        ("/register my password", "usage: /register (the password is asked"),
                        ("/passwd old new", "usage: /passwd (the passwords are asked")]:
        result = commands.parse(line)
        assert isinstance(result, commands.Invalid), line
        assert words in result.reason, (line, result.reason)


def test_text_problems_are_the_ones_chat1_would_refuse():
    assert commands.text_problem("x" * 4000) is None
    assert commands.text_problem("") == "text is empty"
    assert commands.text_problem("x" * 4001) == "text of 4001 characters is over the limit of 4000"
    assert "NUL" in commands.text_problem("a\x00b")
    assert commands.text_problem("caf\udcff") == "text is not valid UTF-8"


@given(st.text())
def test_parse_never_raises(line):
    commands.parse(line)

# ------------------------------------------------------------------- display


MSG = {"type": "msg", "room": "lobby", "from": "bob", "text": "hi", "id": 1, "ts": 0.0}


def test_message_line_shape():
    hhmm = display.clock(0.0)
    assert display.message_line(MSG, "lobby", "alice").text == f"{hhmm} <bob> hi"
    assert display.message_line(MSG, "dev", "alice").text == f"{hhmm} [#lobby] <bob> hi"
    assert display.message_line(MSG, "LOBBY", "alice").text == f"{hhmm} <bob> hi"


def test_private_messages_are_marked_both_ways():
    to_me = dict(MSG, to="alice")
    del to_me["room"]
    assert display.message_line(to_me, "lobby", "alice").text.endswith("*bob* hi")
    from_me = dict(to_me, **{"from": "alice", "to": "bob"})
    assert display.message_line(from_me, "lobby", "alice").text.endswith("-> *bob* hi")


def test_control_characters_from_the_server_are_shown_not_obeyed():
    line = display.message_line(dict(MSG, text="a\x1b[2Jb\nc\x9b"), "lobby", "me")
    assert "\x1b" not in line.text and "\n" not in line.text
    assert line.text.endswith("a\u241b[2Jb\u240ac\\x9b")


def test_colour_only_when_asked():
    line = display.message_line(MSG, "lobby", "alice")
    assert "\x1b[" not in line.render(False)
    assert "\x1b[" in line.render(True)
    assert display.notice("x").kind == display.NOTICE
    assert display.error("x").render(False) == "! x"

# ---------------------------------------------------------------------- keys


def test_keys_decode_text_controls_and_escape_sequences():
    keys = KeyDecoder().feed(b"ab\x1b[D\x1b[3~\x01\x17\r\x7f")
    assert keys == ["ab", Key.LEFT, Key.DELETE, Key.HOME, Key.KILL_WORD, Key.ENTER,
                    Key.BACKSPACE]


def test_keys_wait_for_split_utf8_and_escape_sequences():
    decoder = KeyDecoder()
    data = "é\x1b[1;5C日".encode()
    keys = []
    for index in range(len(data)):
        keys += decoder.feed(data[index:index + 1])
    assert keys == ["é", Key.WORD_RIGHT, "日"]


def test_unknown_escape_sequences_are_dropped_not_typed():
    assert KeyDecoder().feed(b"\x1b[99zok") == ["ok"]

# -------------------------------------------------------------------- editor


def type_keys(editor, *keys):
    for key in keys:
        editor.press(key)


def test_editing_keys():
    editor = LineEditor()
    type_keys(editor, "hello world", Key.LEFT, Key.LEFT, "X")
    assert (editor.text, editor.cursor) == ("hello worXld", 10)
    type_keys(editor, Key.KILL_WORD)
    assert editor.text == "hello ld"
    type_keys(editor, Key.HOME, Key.DELETE, Key.END, Key.BACKSPACE)
    assert editor.text == "ello l"
    type_keys(editor, Key.LEFT, Key.KILL_TO_START)
    assert (editor.text, editor.cursor) == ("l", 0)


def test_a_multibyte_character_is_one_cursor_step_and_wide_ones_two_columns():
    editor = LineEditor(prompt="> ")
    type_keys(editor, "a日é", Key.LEFT)
    assert editor.cursor == 2
    visible, column = editor.render(80)
    assert visible == "> a日é" and column == 2 + 1 + 2
    type_keys(editor, Key.BACKSPACE)
    assert editor.text == "aé"


def test_up_and_down_recall_and_keep_the_draft():
    editor = LineEditor()
    for line in ("one", "two"):
        editor.remember(line)
    type_keys(editor, "dra", Key.UP)
    assert editor.text == "two"
    type_keys(editor, Key.UP, Key.UP)
    assert editor.text == "one"
    type_keys(editor, Key.DOWN, Key.DOWN)
    assert editor.text == "dra"


@given(st.lists(st.sampled_from([*Key, "x", "日", " "]), max_size=40),
       st.integers(min_value=4, max_value=40))
def test_render_always_fits_and_shows_the_cursor(keys, width):
    editor = LineEditor(prompt="#lobby> ")
    editor.remember("earlier line")
    for key in keys:
        editor.press(key)
        visible, column = editor.render(width)
        assert text_width(visible) <= width - 1
        assert 0 <= column <= width - 1
        assert 0 <= editor.cursor <= len(editor.chars)


def test_help_lists_the_account_commands():
    assert any(line.startswith("/register ") for line in commands.HELP)
    assert any(line.startswith("/passwd ") for line in commands.HELP)


def test_a_password_never_shows_in_a_commands_repr():
    assert "secret" not in repr(commands.Passwd("secret old", "secret new"))
    assert "secret" not in repr(commands.Register("secret pw"))

# ----------------------------------------------------------------- passwords


def test_dialogs_ask_in_turn_and_check_the_new_password_at_once():
    register = Dialog.register()
    assert register.prompt == "new password: " and register.answer("long enough\n") is None
    assert register.prompt == "new password again: "
    assert register.answer("long enough") == (commands.Register("long enough"), None)
    passwd = Dialog.passwd()
    assert passwd.answer("x") is None  # the current one is the server's to judge
    assert passwd.answer("y" * 1025) == (
        None, "/passwd: a password is 8 to 1,024 characters, not 1025; nothing sent")
    passwd = Dialog.passwd()
    for answer in ("old password", "new password"):
        assert passwd.answer(answer) is None
    assert passwd.answer("new password") == (commands.Passwd("old password", "new password"),
                                             None)
    login = Dialog.login("alice")
    assert login.prompt == "password for alice (empty: another name): "
    assert login.answer(" spaces kept ") == (" spaces kept ", None)


def test_a_password_file_gives_its_first_line_and_bad_ones_say_why(tmp_path):
    path = tmp_path / "password"
    path.write_bytes(b" with spaces \r\nsecond line\n")
    assert read_password_file(str(path)) == " with spaces "
    path.write_bytes(b"no newline at the end")
    assert read_password_file(str(path)) == "no newline at the end"
    for content, reason in [(b"", "its first line is no password: a password is 8 to 1,024 "
                                  "characters, not 0"),
                            (b"\xff\xfe not utf-8", "not UTF-8 text")]:
        path.write_bytes(content)
        with pytest.raises(ValueError, match=reason):
            read_password_file(str(path))
    with pytest.raises(ValueError, match="No such file"):
        read_password_file(str(tmp_path / "absent"))


def test_the_password_comes_from_the_file_else_the_environment_never_argv(tmp_path, capsys):
    path = tmp_path / "password"
    path.write_text("from the file\n")
    environment = {"CHATCLI_PASSWORD": "from the environment"}
    assert parse_arguments(["--password-file", str(path)], environment).password \
        == "from the file"
    assert parse_arguments([], environment).password == "from the environment"
    assert parse_arguments([], {"CHATCLI_PASSWORD": ""}).password is None
    assert parse_arguments([], {}).password is None
    with pytest.raises(SystemExit):
        parse_arguments(["--password", "my secret"], {})
    error = capsys.readouterr().err
    assert "unrecognized arguments: --password" in error


def test_a_hidden_line_shows_nothing_recalls_nothing_and_keeps_the_visible_one():
    editor = LineEditor(prompt="> ")
    editor.remember("earlier")
    type_keys(editor, "half typed")
    editor.hide(True)
    editor.prompt = "password: "
    type_keys(editor, "secret", Key.UP, Key.LEFT, "!")
    assert editor.text == "secre!t"
    assert editor.render(80) == ("password: ", len("password: "))
    assert editor.submit() == "secre!t"
    editor.hide(False)
    assert (editor.text, editor.cursor) == ("half typed", 10)
    assert editor.history == ["earlier"]


def test_the_seen_file_survives_garbage_and_keeps_its_bounds(tmp_path):
    path = tmp_path / "seen.json"
    path.write_text("{not json")
    assert seen.SeenFile(str(path)).load() == {}
    for n in range(seen.MAX_ENTRIES + 5):
        seen.SeenFile(str(path)).keep((f"e{n}", "bob"), {"alice": n})
    kept = seen.SeenFile(str(path)).load()
    assert ("e4", "bob") not in kept  # the oldest went
    assert kept[("e104", "bob")] == {"alice": 104} and len(kept) == seen.MAX_ENTRIES
    mine = seen.SeenFile(str(path))
    mine.keep(("e104", "bob"), {f"p{i}": i for i in range(seen.MAX_CONVERSATIONS + 1)})
    positions = mine.load()[("e104", "bob")]
    assert len(positions) == seen.MAX_CONVERSATIONS and "p0" not in positions
    assert seen.default_path({"XDG_STATE_HOME": "/x"}) == "/x/chatcli/seen.json"
    assert seen.default_path({"CHATCLI_STATE": "/y.json", "XDG_STATE_HOME": "/x"}) == "/y.json"
