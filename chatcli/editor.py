"""The input line editor: keys in, line state and what to draw out.

Pure (no terminal): the client feeds it `Key`s and typed text from
`keys.KeyDecoder` and asks `render(width)` for the visible part of the line
and the cursor column.  The line is a list of code points, so a multi-byte
character is one cursor step; wide (CJK, emoji) characters take two columns
on screen.  A line wider than the terminal scrolls sideways.  A hidden
line (a password being typed) shows nothing of itself, as passwd(1) and
ssh do: not even its length.
"""

import unicodedata

from .keys import Key

# Lines kept for up/down recall; older ones are forgotten.
HISTORY_SIZE = 500


def char_width(char: str) -> int:
    """Terminal columns one code point takes: 0, 1 or 2."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def text_width(text) -> int:
    return sum(map(char_width, text))


class LineEditor:
    """One line of input with a cursor, readline-style keys and recall."""

    def __init__(self, prompt: str = "", history_size: int = HISTORY_SIZE):
        self.prompt = prompt
        self.chars: list[str] = []
        self.cursor = 0             # index into chars
        self.history: list[str] = []
        self.history_size = history_size
        self._recalled: int | None = None  # index into history while browsing
        self._draft = ""            # the unsent line, kept while browsing
        self._scroll = 0            # first char shown when the line is too wide
        self.hidden = False         # typing a secret: nothing shown, no recall
        self._stash: list[str] = []  # the visible line put aside meanwhile

    def hide(self, hidden: bool) -> None:
        """Start or end a hidden line.  What was typed on the visible line is
        put aside meanwhile and comes back after (a half-typed chat line must
        not become part of a password)."""
        if hidden == self.hidden:
            return
        self.hidden = hidden
        if hidden:
            self._stash, self.chars = self.chars, []
        else:
            self.chars, self._stash = self._stash, []
        self.cursor, self._recalled, self._scroll = len(self.chars), None, 0

    @property
    def text(self) -> str:
        return "".join(self.chars)

    def set_text(self, text: str) -> None:
        self.chars = list(text)
        self.cursor = len(self.chars)

    def submit(self) -> str:
        """Take the line (Enter): return it and start an empty one."""
        line = self.text
        self.chars, self.cursor = [], 0
        self._recalled, self._draft, self._scroll = None, "", 0
        return line

    def remember(self, line: str) -> None:
        """Add a sent line to the up/down recall, skipping repeats."""
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[:-self.history_size]

    def press(self, key) -> None:
        """Apply an editing key or insert typed text (a str)."""
        if isinstance(key, str):
            self.chars[self.cursor:self.cursor] = key
            self.cursor += len(key)
            return
        handler = self._handlers.get(key)
        # Recall would put an old line, unseen, into the secret.
        if handler is not None and not (self.hidden and key in (Key.UP, Key.DOWN)):
            handler(self)

    # ---------------------------------------------------------------- keys

    def _backspace(self) -> None:
        if self.cursor:
            self.cursor -= 1
            del self.chars[self.cursor]

    def _delete(self) -> None:
        del self.chars[self.cursor:self.cursor + 1]

    def _left(self) -> None:
        self.cursor = max(0, self.cursor - 1)

    def _right(self) -> None:
        self.cursor = min(len(self.chars), self.cursor + 1)

    def _word_left(self) -> None:
        self.cursor = self._start_of_word()

    def _word_right(self) -> None:
        end = len(self.chars)
        while self.cursor < end and self.chars[self.cursor].isspace():
            self.cursor += 1
        while self.cursor < end and not self.chars[self.cursor].isspace():
            self.cursor += 1

    def _home(self) -> None:
        self.cursor = 0

    def _end(self) -> None:
        self.cursor = len(self.chars)

    def _kill_to_start(self) -> None:
        del self.chars[:self.cursor]
        self.cursor = 0

    def _kill_to_end(self) -> None:
        del self.chars[self.cursor:]

    def _kill_word(self) -> None:
        start = self._start_of_word()
        del self.chars[start:self.cursor]
        self.cursor = start

    def _start_of_word(self) -> int:
        """Where the word before the cursor starts (spaces before it skipped)."""
        position = self.cursor
        while position and self.chars[position - 1].isspace():
            position -= 1
        while position and not self.chars[position - 1].isspace():
            position -= 1
        return position

    def _older(self) -> None:
        if not self.history or self._recalled == 0:
            return
        if self._recalled is None:
            self._draft = self.text
            self._recalled = len(self.history)
        self._recalled -= 1
        self.set_text(self.history[self._recalled])

    def _newer(self) -> None:
        if self._recalled is None:
            return
        self._recalled += 1
        if self._recalled == len(self.history):
            self._recalled = None
            self.set_text(self._draft)
        else:
            self.set_text(self.history[self._recalled])

    _handlers = {
        Key.BACKSPACE: _backspace, Key.DELETE: _delete,
        # Ctrl-D on a non-empty line deletes forward, as in readline; on an
        # empty line the client takes it as end of input.
        Key.EOF: _delete,
        Key.LEFT: _left, Key.RIGHT: _right,
        Key.WORD_LEFT: _word_left, Key.WORD_RIGHT: _word_right,
        Key.HOME: _home, Key.END: _end,
        Key.KILL_TO_START: _kill_to_start, Key.KILL_TO_END: _kill_to_end,
        Key.KILL_WORD: _kill_word,
        Key.UP: _older, Key.DOWN: _newer,
    }

    # --------------------------------------------------------------- render

    def render(self, width: int) -> tuple[str, int]:
        """The prompt and the part of the line that fits, and the cursor column.

        The last column stays empty so that the cursor never sits past the
        edge (where terminals differ on wrapping).  A prompt that leaves no
        room for typing is dropped.
        """
        prompt = self.prompt
        room = width - text_width(prompt) - 1
        if room < 1:
            prompt, room = "", max(1, width - 1)
        chars, cursor = (([], 0) if self.hidden else (self.chars, self.cursor))
        # Scroll as little as needed to keep the cursor in view.
        self._scroll = min(self._scroll, cursor)
        while text_width(chars[self._scroll:cursor]) > room:
            self._scroll += 1
        while self._scroll and text_width(chars[self._scroll - 1:]) <= room:
            self._scroll -= 1
        visible, used = [], 0
        for char in chars[self._scroll:]:
            used += char_width(char)
            if used > room:
                break
            visible.append(char)
        column = text_width(prompt) + text_width(chars[self._scroll:cursor])
        return prompt + "".join(visible), column
