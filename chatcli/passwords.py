"""Where chatcli's passwords come from, without I/O of the terminal's.

A password reaches chatcli in one of three ways, never as a command-line
argument (argv is visible to every user of the machine in `ps`):

- `--password-file FILE`: its first line (`read_password_file`);
- `CHATCLI_PASSWORD` in the environment;
- a question answered without echo (on a terminal) or by the next input
  lines (in pipe mode): a `Dialog`.

`Dialog` is the question part: the answers to /register (the new password
twice), /passwd (the current one, then the new one twice) and a login (the
account's password), checked as they come so a mismatch or a length chat/1
refuses ends it with one line and nothing sent.
"""

from framing import MAX_PASSWORD_LINE, password_line, password_problem

from . import commands

# Wrong passwords typed at the login question before the client gives up.
LOGIN_TRIES = 3


def read_password_file(path: str) -> str:
    """The password in `path`: its first line, without the line ending (spaces
    are kept: they may be part of it).  Raises ValueError with a one-line
    reason for a file that cannot be read, is not UTF-8, or holds no password
    chat/1 accepts."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PASSWORD_LINE)
    except OSError as exc:
        raise ValueError(f"--password-file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--password-file {path}: not UTF-8 text") from None
    password = password_line(text)
    problem = password_problem(password)
    if problem is not None:
        raise ValueError(f"--password-file {path}: its first line is no password: {problem}")
    return password


class Dialog:
    """Secret answers asked one after another, then one command.

    `kind` is "register", "passwd" or "login"; `prompt` is the question to
    show now.  `answer(text)` takes the next answer and returns None while
    more are wanted, else a tuple (`command`, `problem`): the finished
    command (`commands.Register`, `commands.Passwd`, or for a login the
    password itself, a str) and None, or None and a one-line reason why
    nothing is sent.
    """

    def __init__(self, kind: str, prompts: tuple[str, ...]):
        self.kind = kind
        self._prompts = prompts
        self._answers: list[str] = []

    @classmethod
    def register(cls) -> "Dialog":
        """The /register questions: the new password, twice."""
        return cls("register", ("new password: ", "new password again: "))

    @classmethod
    def passwd(cls) -> "Dialog":
        """The /passwd questions: the current password, then the new one twice."""
        return cls("passwd", ("current password: ", "new password: ", "new password again: "))

    @classmethod
    def login(cls, name: str) -> "Dialog":
        """The login question: the password of account `name` (empty: pick another name)."""
        return cls("login", (f"password for {name} (empty: another name): ",))

    @property
    def prompt(self) -> str:
        """The question to show for the next answer."""
        return self._prompts[len(self._answers)]

    def answer(self, text: str):
        """Take the next answer (a typed line, its line end dropped); see the class."""
        text = password_line(text)
        self._answers.append(text)
        if self.kind == "login":
            return text, None
        # The new password is checked at once, before it is asked again.
        new_at = 0 if self.kind == "register" else 1
        if len(self._answers) == new_at + 1:
            problem = password_problem(text)
            if problem is not None:
                return None, f"/{self.kind}: {problem}; nothing sent"
        if len(self._answers) < len(self._prompts):
            return None
        *old, new, again = self._answers
        if new != again:
            return None, f"/{self.kind}: the two new passwords differ; nothing sent"
        if self.kind == "register":
            return commands.Register(new), None
        return commands.Passwd(old[0], new), None
