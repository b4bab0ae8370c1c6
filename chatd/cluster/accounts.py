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

import logging

from ..core import CheckPassword, Credential, PasswordChecked
from .effects import Command

_ACCOUNT = "chatd:acct:"

log = logging.getLogger("chatd")


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
    docstring).  `_checked` (the base's table) routes each `PasswordChecked`;
    `_credentials_read` (session -> the credential as Redis gave it) is the
    ClusterCore's."""

    def _password_checked(self, completion: PasswordChecked) -> None:
        """The hasher's answer, for the request the session is parked on (first in
        its queue: taken out when it is answered, here on a failed check or
        by the script that follows a good one)."""
        session = completion.job.session
        if session.ended:
            self._credentials_read.pop(session, None)
            return  # a login whose connection closed is dropped quietly
        item = session.deferred[0]
        if completion.ok is None or not completion.ok:
            self._credentials_read.pop(session, None)
            session.deferred.popleft()
            if completion.ok is None:
                self._unavailable(session, completion, "logins being checked"
                                  if item["type"] == "hello" else "passwords being hashed",
                                  item.get("ref"))
            else:
                self._auth_failed(session, item.get("ref"))
            self._resume(session)
            return
        self._checked[item["type"]](session, item, completion, item.get("ref"))

    def _with_credential(self, session, key: str, password: str, new: str | None) -> None:
        """Read account `key`'s credential (kept as Redis has it, for the script
        that follows to compare), then have `password` checked against it (and
        `new` hashed).  A name that is no account is checked against none, so
        a login costs the same time; a passwd's account gone is `not_registered`."""
        def read(reply) -> None:
            if session.ended:
                return
            why = self.failed(reply)
            if why is not None:
                self._answer_parked(session, "unavailable", why)
                return
            if reply is None and new is not None:
                self._answer_parked(session, "not_registered", "your account was deleted "
                                    "by the server's operator")
                return
            try:
                credential = None if reply is None else parse_credential(reply)
            except ValueError:
                log.error("cluster: account %r has a credential in Redis that is not one "
                          "chatd wrote; fix or delete it", key)
                self._answer_parked(session, "unavailable", "the password could not be "
                                    "checked (a server error, logged); tell the operator")
                return
            self._credentials_read[session] = reply
            self.out.effects.append(CheckPassword(session, password, credential, new))
        self.out.effects.append(Command(("HGET", _ACCOUNT + key, "cred"), read))

    # ---------------------------------------------------------------- login

    def _login(self, session, message: dict, key: str, password: str, ref) -> None:
        """A hello with a password: limited per address, then checked against the
        account's credential in Redis."""
        if not self._login_refused(session, password, ref):
            self._park(session, message)
            self._with_credential(session, key, password, None)

    def _hello_checked(self, session, message: dict, result: PasswordChecked, ref) -> None:
        self._claim(session, message, self._credentials_read.pop(session))

    # ------------------------------------------------------------- register

    def _register(self, session, message: dict, ref) -> None:
        if not self._registration_refused(session, message, ref, session.account):
            self._park(session, message)
            self.out.effects.append(CheckPassword(session, None, None, message["password"]))

    def _register_checked(self, session, message: dict, result: PasswordChecked,
                          ref) -> None:
        self._script(session, "register",
                     (session.key, session.name, credential_text(result.credential),
                      self.wall_clock(), self.sid_of[session]),
                     self._registered)

    def _registered(self, session, message: dict, reply) -> None:
        if self._refused(session, reply, {
                b"name_registered": ("name_registered",
                                     f"{session.name!r} is an account already"),
                b"gone": ("unavailable", "your session is no longer the cluster's "
                          "(replaced or timed out); nothing was registered")},
                message.get("ref")):
            return
        session.account = True
        self.out.reply(session, {"type": "registered", "name": session.name},
                       message.get("ref"))
        self._resume(session)

    # --------------------------------------------------------------- passwd

    def _passwd(self, session, message: dict, ref) -> None:
        if not self._passwd_refused(session, message, ref, session.account):
            self._park(session, message)
            self._with_credential(session, session.key, message["old"], message["new"])

    def _passwd_checked(self, session, message: dict, result: PasswordChecked, ref) -> None:
        self._script(session, "passwd",
                     (session.key, self._credentials_read.pop(session),
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
