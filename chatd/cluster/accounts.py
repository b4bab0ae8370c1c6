"""Accounts in cluster mode: kept in Redis, so an account logs in on any node.

A part of ClusterCore (a mixin, as requests.py): login (a hello with a
password), `register` and `passwd` read the account's credential from
Redis, have the password checked on the node's hashing worker
(chatd/accounts.py, as a single node does), and then run a script that
changes Redis only if the credential is still the one checked (an operator
or another node may have changed it meanwhile).  The session stays parked
from the request to the script's answer, so its later requests wait.

The failed-login limiter is the node's own (per client address, as on a
single node): a client that moves to another node starts afresh there.
"""

from framing import password_ok

from ..core import CheckPassword, Credential, PasswordChecked
from .effects import Command

_ACCOUNT = "chatd:acct:"


def credential_text(credential: Credential) -> str:
    """How Redis keeps a credential: "n r p salt hash" (salt and hash in hex).

    The scripts compare these texts to learn whether a credential changed
    since it was read."""
    return (f"{credential.n} {credential.r} {credential.p} {credential.salt.hex()} "
            f"{credential.hash.hex()}")


def parse_credential(text: bytes) -> Credential:
    """The Credential of `credential_text`'s text; ValueError if it is not one."""
    n, r, p, salt, hashed = text.decode().split(" ")
    return Credential(int(n), int(r), int(p), bytes.fromhex(salt), bytes.fromhex(hashed))


class ClusterAccounts:
    """ClusterCore's handlers of logins, `register` and `passwd` (see the module
    docstring).  `_checked` (the base's table) routes each `PasswordChecked`."""

    def _password_checked(self, completion: PasswordChecked) -> None:
        """The hasher's answer, for the request the session is parked on (first in
        its queue: taken out when it is answered, here on a failed check or
        by the script that follows a good one)."""
        session = completion.job.session
        if session.ended:
            return  # a login whose connection closed is dropped quietly
        item = session.deferred[0]
        if completion.ok is None:
            self._answer_parked(session, "unavailable", "the password could not be "
                                "checked (a server error, logged)" if completion.failed
                                else "too many passwords being checked; try again shortly")
            return
        if not completion.ok:
            self._failed_parked(session)
            return
        self._checked[item["type"]](session, item, completion, item.get("ref"))

    def _failed_parked(self, session) -> None:
        """`auth_failed` (counted by the limiter) for the parked request."""
        item = session.deferred.popleft()
        self._auth_failed(session, item.get("ref"))
        self._resume(session)

    def _with_credential(self, session, key: str, password: str, new: str | None) -> None:
        """Read account `key`'s credential, then have `password` checked against it
        (and `new` hashed); a name that is no account is checked against none,
        so it costs the same time."""
        def read(reply) -> None:
            if session.ended:
                return
            why = self.failed(reply)
            if why is not None:
                self._answer_parked(session, "unavailable", why)
                return
            credential = None if reply is None else parse_credential(reply)
            self.out.effects.append(CheckPassword(session, password, credential, new))
        self.out.effects.append(Command(("HGET", _ACCOUNT + key, "cred"), read))

    # ---------------------------------------------------------------- login

    def _login(self, session, message: dict, password: str) -> None:
        """A hello with a password (the session parked): limited per address, then
        checked against the account's credential in Redis."""
        if self.logins.blocked(session.address, self.clock()):
            self._answer_parked(session, "rate_limited", "too many failed logins from "
                                f"your address; wait up to {self.logins.window:g}s")
        elif self.settings.accounts == "off" or not password_ok(password):
            self._failed_parked(session)  # nothing could match: no hash to spend
        else:
            self._with_credential(session, message["name"].lower(), password, None)

    def _hello_checked(self, session, message: dict, result: PasswordChecked, ref) -> None:
        self._claim(session, message, credential_text(result.job.credential))

    # ------------------------------------------------------------- register

    def _register(self, session, message: dict, ref) -> None:
        if session.account:
            self.out.error(session, "name_registered",
                           f"{session.name!r} is an account already", ref)
        elif self.settings.accounts != "open":
            self.out.error(session, "registration_closed", "this server does not take "
                           "registrations", ref)
        elif not password_ok(message["password"]):
            self.out.error(session, "bad_password", "a password is 8 to 1024 characters", ref)
        else:
            self._park(session, message)
            self.out.effects.append(CheckPassword(session, None, None, message["password"]))

    def _register_checked(self, session, message: dict, result: PasswordChecked,
                          ref) -> None:
        self._script(session, "register",
                     (session.key, session.name, credential_text(result.credential),
                      self.wall_clock(), self.sid_of[session]),
                     self._registered)

    def _registered(self, session, message: dict, reply) -> None:
        if self._refused(session, reply, {b"name_registered": (
                "name_registered", f"{session.name!r} is an account already")},
                message.get("ref")):
            return
        session.account = True
        self.out.reply(session, {"type": "registered", "name": session.name},
                       message.get("ref"))
        self._resume(session)

    # --------------------------------------------------------------- passwd

    def _passwd(self, session, message: dict, ref) -> None:
        if not session.account:
            self.out.error(session, "not_registered", "log in to an account first", ref)
        elif not password_ok(message["new"]):
            self.out.error(session, "bad_password", "a password is 8 to 1024 characters", ref)
        elif self.logins.blocked(session.address, self.clock()):
            self.out.error(session, "rate_limited", "too many failed logins from your "
                           f"address; wait up to {self.logins.window:g}s", ref)
        elif not password_ok(message["old"]):
            self._auth_failed(session, ref)
        else:
            self._park(session, message)
            self._with_credential(session, session.key, message["old"], message["new"])

    def _passwd_checked(self, session, message: dict, result: PasswordChecked, ref) -> None:
        self._script(session, "passwd",
                     (session.key, credential_text(result.job.credential),
                      credential_text(result.credential)),
                     self._password_changed)

    def _password_changed(self, session, message: dict, reply) -> None:
        ref = message.get("ref")
        if reply[0] == b"auth_failed":  # changed since it was checked
            self._auth_failed(session, ref)
            self._resume(session)
            return
        if self._refused(session, reply, {b"no_account": (
                "not_registered", f"the account {session.name!r} is gone")}, ref):
            return
        self.out.reply(session, {"type": "password_changed"}, ref)
        self._resume(session)

    # -------------------------------------------------------------- eviction

    def _evicted(self, sid: bytes, code: bytes) -> None:
        """The operator made an account of a guest's name (`name_registered`) or
        deleted a logged-in account (`not_registered`): Redis has ended that
        session; tell it why and close it (`bye` replaced)."""
        session = self.local_session(sid)
        if session is None:
            return
        if code == b"name_registered":
            text = "your name is now an account (made by the server's operator); log in " \
                   "with its password"
        else:
            text = "your account was deleted by the server's operator"
        self.out.error(session, code.decode(), text)
        self._close(session, "replaced")
