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

from . import commands

# chat/1 Accounts: a password is 8 to 1,024 characters.
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1_024
PASSWORD_RULE = f"a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS:,} characters"
# Wrong passwords typed at the login question before the client gives up.
LOGIN_TRIES = 3


def password_problem(password: str) -> str | None:
    """Why chat/1 would refuse `password` (one line), or None when it would not."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        return f"{PASSWORD_RULE}, not {len(password)}"
    return None


def read_password_file(path: str) -> str:
    """The password in `path`: its first line, without the line ending (spaces
    are kept: they may be part of it).  Raises ValueError with a one-line
    reason for a file that cannot be read, is not UTF-8, or holds no password
    chat/1 accepts."""
    try:
        with open(path, "rb") as file:
            # A password is at most 1,024 characters of at most 4 bytes.
            data = file.read(MAX_PASSWORD_CHARS * 4 + 2)
    except OSError as exc:
        raise ValueError(f"--password-file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--password-file {path}: not UTF-8 text") from None
    password = text.split("\n", 1)[0].removesuffix("\r")
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
        return cls("register", ("new password: ", "new password again: "))

    @classmethod
    def passwd(cls) -> "Dialog":
        return cls("passwd", ("current password: ", "new password: ", "new password again: "))

    @classmethod
    def login(cls, name: str) -> "Dialog":
        return cls("login", (f"password for {name} (empty: another name): ",))

    @property
    def prompt(self) -> str:
        return self._prompts[len(self._answers)]

    def answer(self, text: str):
        text = text.removesuffix("\n").removesuffix("\r")
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
