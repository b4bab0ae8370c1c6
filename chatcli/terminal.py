"""The interactive terminal: raw mode, the input line at the bottom, chat above it.

`Terminal` is a context manager that puts the terminal in raw mode (no echo,
no line buffering, keys such as Ctrl-C delivered as bytes) and gives it back
exactly as it found it on every way out: a normal exit, an exception, SIGTERM
or SIGHUP (turned into SystemExit so the `finally` runs), and Ctrl-Z, which
restores, stops, and on `fg` takes raw mode again.  Printing a line above the
input line clears that line, prints, and redraws the prompt and the half-typed
text with the cursor where it was.
"""

import os
import signal
import termios

from .editor import LineEditor

CLEAR_LINE = "\r\x1b[K"
CLEAR_SCREEN = "\x1b[H\x1b[2J"


class Terminal:
    def __init__(self, fd_in: int = 0, fd_out: int = 1):
        self.fd_in, self.fd_out = fd_in, fd_out
        self.resized = False
        self._saved_attributes = None
        self._saved_handlers: dict = {}

    # ------------------------------------------------------------ raw mode

    def __enter__(self):
        # Handlers first: a SIGTERM from here on unwinds through __exit__.
        for signum, handler in ((signal.SIGWINCH, self._on_resize),
                                (signal.SIGTERM, _exit_on_signal),
                                (signal.SIGHUP, _exit_on_signal)):
            self._saved_handlers[signum] = signal.signal(signum, handler)
        self._saved_attributes = termios.tcgetattr(self.fd_in)
        self._raw()
        return self

    def __exit__(self, *exc_info):
        if self._saved_attributes is not None:
            self.write(CLEAR_LINE)
            self._restore()
            self._saved_attributes = None
        for signum, handler in self._saved_handlers.items():
            signal.signal(signum, handler)
        self._saved_handlers.clear()

    def _raw(self) -> None:
        attributes = termios.tcgetattr(self.fd_in)
        iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attributes
        iflag &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP
                   | termios.IXON)
        # Output processing (OPOST) stays on, so "\n" still returns the carriage.
        lflag &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
        cc = list(cc)
        cc[termios.VMIN], cc[termios.VTIME] = 1, 0
        termios.tcsetattr(self.fd_in, termios.TCSADRAIN,
                          [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])

    def _restore(self) -> None:
        if self._saved_attributes is not None:
            termios.tcsetattr(self.fd_in, termios.TCSADRAIN, self._saved_attributes)

    def _on_resize(self, signum, frame) -> None:
        # Only a flag: the loop's wakeup fd makes select return, and the
        # loop redraws at a safe point.
        self.resized = True

    def suspend(self, editor: LineEditor) -> None:
        """Ctrl-Z: give the terminal back, stop, and take it again on resume."""
        self.write(CLEAR_LINE)
        self._restore()
        os.kill(os.getpid(), signal.SIGTSTP)
        # Execution resumes here after SIGCONT.
        self._raw()
        self.redraw(editor)

    # -------------------------------------------------------------- output

    @property
    def columns(self) -> int:
        try:
            return os.get_terminal_size(self.fd_out).columns
        except OSError:
            return 80

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            written = os.write(self.fd_out, data)
            data = data[written:]

    def _input_line(self, editor: LineEditor) -> str:
        visible, column = editor.render(self.columns)
        return CLEAR_LINE + visible + "\r" + (f"\x1b[{column}C" if column else "")

    def redraw(self, editor: LineEditor, clear_screen: bool = False) -> None:
        self.resized = False
        self.write((CLEAR_SCREEN if clear_screen else "") + self._input_line(editor))

    def show(self, texts: list[str], editor: LineEditor) -> None:
        """Print lines above the input line, then redraw it intact."""
        if texts:
            self.write("".join(CLEAR_LINE + text + "\r\n" for text in texts)
                       + self._input_line(editor))


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)
