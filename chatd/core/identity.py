"""Who a session is: hello and welcome, accounts (register, log in, passwd), nick,
and the conversations an account is told of in its welcome.

A part of ChatCore (a mixin): these handlers share the core's state
(settings, users, accounts, rooms, messages, out) and are split off only to
keep each module readable.
"""

import hmac
import itertools
import secrets
from collections import OrderedDict

from framing import LOBBY, TOKEN_BYTES, WELCOME_USERS, password_ok

from .. import __version__
from .accounts import Account
from .effects import CheckPassword, PasswordChecked, StoreAccount
from .history import History
from .messages import pair_key
from .session import Session

# What `welcome.server` says: the package metadata's version, as `chatd --version`.
SERVER_VERSION = f"chatd/{__version__}"
# Partners of one account listed in `welcome.conversations`, at most.
WELCOME_CONVERSATIONS = 100
# Partners remembered per account (least recent forgotten first).
MAX_PARTNERS = 1_000


class OfflineAccount:
    """An account that is not connected, as the other end of a dm or a `history` {with}:
    its name and its identity (no connection: nothing is delivered to it).
    With `account` False, a guest gone since, named in a conversation of an
    account (its `history` only)."""

    __slots__ = ("name", "key", "identity", "account")

    def __init__(self, name: str, identity: int, account: bool = True):
        self.name = name
        self.key = name.lower()
        self.identity = identity
        self.account = account


class IdentityRequests:
    """ChatCore's handlers of who a session is (see the module docstring)."""

    def _account_of(self, key: str) -> Account | None:
        """The account that owns name `key`, if accounts are on."""
        if self.settings.accounts == "off":
            return None
        return self.accounts.get(key)

    def _hello(self, session: Session, message: dict, ref) -> None:
        if session.name is not None:
            self.out.error(session, "bad_message", "already welcomed", ref)
            return
        name = message["name"]
        key = name.lower()
        password = message.get("password")
        if password is not None:
            self._login(session, message, key, password, ref)
            return
        holder = self.users.get(key)
        account = self._account_of(key)
        if account is None and not self.settings.guests:
            self.out.error(session, "auth_required", "this server serves accounts only: "
                           "log in with a password", ref)
            return
        if holder is not None:
            token = message.get("token")
            # As bytes: compare_digest refuses str with non-ASCII characters.
            if token is None or not hmac.compare_digest(token.encode(),
                                                        holder.token.encode()):
                if account is not None:
                    self.out.error(session, "auth_required",
                                   f"{name!r} is an account: send its password", ref)
                else:
                    self.out.error(session, "name_taken", f"{name!r} is taken", ref)
                return
            self._close(holder, "replaced")
            session.identity = holder.identity
            session.account = holder.account
        elif account is not None:
            self.out.error(session, "auth_required",
                           f"{name!r} is an account: send its password", ref)
            return
        else:
            session.identity = next(self._identities)
        self._welcome(session, name, key, ref)

    def _login(self, session: Session, message: dict, key: str, password: str, ref) -> None:
        """A hello with a password: limited per address, then checked on the worker."""
        if self._login_refused(session, password, ref):
            return
        account = self._account_of(key)
        self.out.effects.append(CheckPassword(
            session, password, account.credential if account is not None else None))
        self._park(session, message)

    def _login_refused(self, session: Session, password: str, ref) -> bool:
        """Answer a login that needs no hashing to refuse: its address over the
        failed-login limit, or nothing that could match (accounts off, a
        password chat/1 would not take).  True if answered."""
        if self._over_login_limit(session, ref):
            return True
        if self.settings.accounts == "off" or not password_ok(password):
            self._auth_failed(session, ref)  # no hash to spend
            return True
        return False

    def _over_login_limit(self, session: Session, ref) -> bool:
        """`rate_limited` if the session's address has used up its failed logins."""
        if self.logins.blocked(session.address, self.clock()):
            self.out.error(session, "rate_limited", "too many failed logins from your "
                           f"address; wait up to {self.logins.window:g}s", ref)
            return True
        return False

    def _auth_failed(self, session: Session, ref) -> None:
        self.logins.failed(session.address, self.clock())
        # One message for a wrong password and for a name that is no account.
        self.out.error(session, "auth_failed", "wrong name or password", ref)

    def _hello_checked(self, session: Session, message: dict, result: PasswordChecked,
                       ref) -> None:
        name = message["name"]
        key = name.lower()
        account = self._account_of(key)
        if self._check_failed(session, account, result, "logins being checked", ref):
            return
        holder = self.users.get(key)
        if holder is not None:
            # The account's owner logs in again: the old session goes.
            self._close(holder, "replaced")
        session.identity = self._account_identities.setdefault(key, next(self._identities))
        session.account = True
        self._welcome(session, account.name, key, ref)

    def _welcome(self, session: Session, name: str, key: str, ref) -> None:
        if key == name:
            key = name  # a lowercase name: one string kept, not two equal ones
        session.name, session.key = name, key
        session.token = secrets.token_urlsafe(TOKEN_BYTES)
        self.users[key] = session
        lobby = self.rooms.lobby
        self.rooms.enter(session, lobby)
        # islice: a walk over a 10,000-member lobby per hello would be O(N²).
        others = [member.name for member in itertools.islice(lobby.members, WELCOME_USERS)
                  if member is not session][:WELCOME_USERS - 1]
        welcome = {
            "type": "welcome", "name": name, "token": session.token, "rooms": [LOBBY],
            "users": [name] + others,
            "user_count": len(lobby.members), "server": SERVER_VERSION,
            "epoch": self.epoch, "limits": self.limits,
        }
        if session.account:
            welcome["account"] = True
            welcome["conversations"] = self._conversations_of(session)
        self.out.reply(session, welcome, ref)
        if self.rooms.announces(lobby) and len(lobby.members) > 1:
            self.out.deliver(tuple(m for m in lobby.members if m is not session),
                          {"type": "joined", "room": LOBBY, "name": name})

    def _load_pairs(self, pairs) -> None:
        """The accounts' conversations on file: (low key, high key, next id), least
        recent first.  Each gets its numbering (its messages load on demand)."""
        for key in self.accounts:
            self._account_identities[key] = next(self._identities)
        conversations = self.messages.conversations
        for low, high, next_id in pairs:
            if low not in self.accounts or high not in self.accounts:
                continue
            a = OfflineAccount(self.accounts[low].name, self._account_identities[low])
            b = OfflineAccount(self.accounts[high].name, self._account_identities[high])
            conversations.put(pair_key(a, b), History(conversations.history_size,
                                                       conversations.budget, next_id))
            self._note_partner(a, b)
            self._note_partner(b, a)

    @staticmethod
    def _stored_pair(a, b) -> tuple[str, str] | None:
        """The store's key of a pair of two accounts (their keys in order), else None."""
        if not (a.account and b.account):
            return None
        return (a.key, b.key) if a.key <= b.key else (b.key, a.key)

    def _conversations_of(self, session: Session) -> list:
        """`welcome.conversations`: up to 100 {with, last_id}, most recent first, of the
        pairs still kept in memory."""
        listed = []
        for identity, name in reversed(self._partners.get(session.identity, {}).items()):
            pair = (session.identity, identity) if session.identity <= identity \
                else (identity, session.identity)
            history = self.messages.conversations.get(pair)
            if history is not None and history.next_id > 1:
                listed.append({"with": name, "last_id": history.next_id - 1})
                if len(listed) == WELCOME_CONVERSATIONS:
                    break
        return listed

    def _note_partner(self, account, partner) -> None:
        partners = self._partners.setdefault(account.identity, OrderedDict())
        partners[partner.identity] = partner.name
        partners.move_to_end(partner.identity)
        if len(partners) > MAX_PARTNERS:
            partners.popitem(last=False)

    def _peer(self, session: Session, name: str, ref, partners: bool = False):
        """The other end of a dm or a private `history`: a connected user, or an
        account that is offline, or with `partners` (a history) one of the
        session's conversations that `welcome.conversations` lists (a guest
        gone since); no_such_user for anyone else."""
        key = name.lower()
        user = self.users.get(key)
        if user is not None:
            return user
        account = self._account_of(key)
        if account is not None:
            return OfflineAccount(account.name, self._account_identities.setdefault(
                key, next(self._identities)))
        if partners:
            for identity, partner in reversed(self._partners.get(session.identity,
                                                                 {}).items()):
                if partner.lower() == key:
                    return OfflineAccount(partner, identity, account=False)
        self.out.error(session, "no_such_user", f"no user {name!r}", ref)
        return None

    def _register(self, session: Session, message: dict, ref) -> None:
        if self._registration_refused(session, message, ref, session.account or
                                      self._account_of(session.key) is not None):
            return
        self.out.effects.append(CheckPassword(session, None, None, message["password"]))
        self._park(session, message)

    def _registration_refused(self, session: Session, message: dict, ref,
                              registered: bool) -> bool:
        """Answer a `register` that cannot be: the name an account already
        (`registered`), registrations closed, a password chat/1 would not take.
        True if answered."""
        if registered:
            self.out.error(session, "name_registered",
                           f"{session.name!r} is an account already", ref)
        elif self.settings.accounts != "open":
            self.out.error(session, "registration_closed", "this server does not take "
                           "registrations", ref)
        elif not password_ok(message["password"]):
            self.out.error(session, "bad_password", "a password is 8 to 1024 characters", ref)
        else:
            return False
        return True

    def _register_checked(self, session: Session, message: dict, result: PasswordChecked,
                          ref) -> None:
        if result.ok is None:
            self._unavailable(session, result, "passwords being hashed", ref)
            return
        key = session.key
        account = self.accounts[key] = Account(session.name, result.credential,
                                               self.wall_clock())
        self._account_identities[key] = session.identity
        session.account = True
        if self.rooms.durable:
            self.out.effects.append(StoreAccount(key, account.name, account.credential,
                                                 account.created))
        self.out.reply(session, {"type": "registered", "name": session.name}, ref)

    def _passwd(self, session: Session, message: dict, ref) -> None:
        account = self._account_of(session.key)
        if self._passwd_refused(session, message, ref, session.account and
                                account is not None):
            return
        self.out.effects.append(CheckPassword(session, message["old"], account.credential,
                                              message["new"]))
        self._park(session, message)

    def _passwd_refused(self, session: Session, message: dict, ref,
                        registered: bool) -> bool:
        """Answer a `passwd` that needs no hashing to refuse: not logged in to an
        account (`registered` False), a new password chat/1 would not take, the
        address over the failed-login limit, an old one that cannot match.
        True if answered."""
        if not registered:
            self.out.error(session, "not_registered", "log in to an account first", ref)
        elif not password_ok(message["new"]):
            self.out.error(session, "bad_password", "a password is 8 to 1024 characters", ref)
        elif self._over_login_limit(session, ref):
            pass
        elif not password_ok(message["old"]):
            self._auth_failed(session, ref)
        else:
            return False
        return True

    def _check_failed(self, session: Session, account, result: PasswordChecked, busy: str,
                      ref) -> bool:
        """Answer a check that did not let `session` through: `unavailable` when the
        hasher was full (`busy` says of what), else `auth_failed` for a wrong
        password or an account changed or gone meanwhile.  True if answered."""
        if result.ok is None:
            self._unavailable(session, result, busy, ref)
            return True
        if not result.ok or account is None or account.credential is not result.job.credential:
            self._auth_failed(session, ref)
            return True
        return False

    def _unavailable(self, session: Session, result: PasswordChecked, busy: str,
                     ref) -> None:
        """`unavailable` for a check not done: the hasher was full (`busy` says of
        what) or the check failed on the server (logged there)."""
        if result.failed:
            self.out.error(session, "unavailable", "the password could not be checked "
                           "(a server error, logged); tell the operator", ref)
        else:
            self.out.error(session, "unavailable", f"too many {busy}; try again shortly", ref)

    def _passwd_checked(self, session: Session, message: dict, result: PasswordChecked,
                        ref) -> None:
        account = self._account_of(session.key)
        if self._check_failed(session, account, result, "passwords being hashed", ref):
            return
        account.credential = result.credential
        if self.rooms.durable:
            self.out.effects.append(StoreAccount(session.key, account.name,
                                                 account.credential, account.created))
        self.out.reply(session, {"type": "password_changed"}, ref)

    def _accounts_loaded(self, on_file: dict) -> None:
        """The operator's `chatd account` changed the accounts on file (`on_file`:
        all of them, casefolded name -> Account): match them.

        A deleted account loses its identity (a later account of that name
        starts afresh: its predecessor's dms are out of reach) and its
        session ends: `error` `not_registered`, `bye` `replaced` (the name
        is no longer its).  A new account's name held by a guest ends that
        guest the same way, with `name_registered`: no guest ever speaks
        under an account's name; unless accounts are "off": then nobody can
        log in to it and the guest keeps the name.  A new password takes
        effect for the next login; a check already on the worker against the
        old one fails.
        """
        for key in [key for key in self.accounts if key not in on_file]:
            del self.accounts[key]
            identity = self._account_identities.pop(key, None)
            if identity is not None:
                self._partners.pop(identity, None)
                for partners in self._partners.values():
                    partners.pop(identity, None)
            holder = self.users.get(key)
            if holder is not None and holder.account:
                self.out.error(holder, "not_registered", f"the account {holder.name!r} "
                               "was deleted by the server's operator")
                self._close(holder, "replaced")
        for key, account in on_file.items():
            mine = self.accounts.get(key)
            if mine is None:
                self.accounts[key] = account
                holder = self.users.get(key)
                # With accounts off nobody can log in to it: the guest keeps the name.
                if holder is not None and not holder.account \
                        and self.settings.accounts != "off":
                    self.out.error(holder, "name_registered", f"{holder.name!r} is now an "
                                   "account (made by the server's operator); log in with "
                                   "its password")
                    self._close(holder, "replaced")
            elif mine.credential != account.credential:
                mine.credential = account.credential

    def _nick(self, session: Session, message: dict, ref) -> None:
        new = message["name"]
        key = new.lower()
        if session.account:
            self.out.error(session, "not_allowed", "a logged-in user keeps the account's "
                           "name", ref)
            return
        if key != session.key and self._account_of(key) is not None:
            self.out.error(session, "name_registered", f"{new!r} is an account", ref)
            return
        holder = self.users.get(key)
        if holder is not None and holder is not session:
            self.out.error(session, "name_taken", f"{new!r} is taken", ref)
            return
        old = session.name
        del self.users[session.key]
        session.name, session.key = new, key
        self.users[key] = session
        recipients = {}
        for room in session.rooms.values():
            if self.rooms.announces(room):
                recipients.update(room.members)
        recipients.pop(session, None)
        renamed = {"type": "renamed", "old": old, "new": new}
        payload = self.out.deliver(tuple(recipients), renamed)
        self.out.to_actor(session, renamed, payload, ref)
