"""Password hashing for accounts, on its own worker thread (never the loop's, never the store's).

scrypt (hashlib.scrypt) with a random 16-byte salt per hash; the parameters
are kept with each hash (`Credential`), so they can be raised later and old
hashes still verify.  SCRYPT_N/R/P were chosen so one hash costs 50-200 ms
on the development machine (2 cores: n=2**15, r=8, p=1 measured 70-73 ms,
and 32 MiB of memory per hash; 2**14 was 27-34 ms, 2**16 145 ms).

`AccountLink` takes the core's `CheckPassword` effects, runs each on the
"chatd-accounts" `Worker` (at most MAX_BACKLOG waiting: beyond it the
answer is `unavailable` at once, so a login flood cannot queue minutes of
CPU) and hands the `PasswordChecked` completions back through the loop.
Passwords are never logged: effects and credentials have reprs without them.
"""

import hashlib
import hmac
import logging
import os

from .core import CheckPassword, Credential, PasswordChecked
from .worker import Worker

log = logging.getLogger("chatd")

SCRYPT_N = 2 ** 15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# Password jobs waiting for the worker, at most (about 2.5 s of hashing).
MAX_BACKLOG = 32


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem: OpenSSL's default (32 MiB) is just below what n=2**15, r=8 needs.
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=128 * r * (n + p + 2) + (1 << 20), dklen=HASH_BYTES)


def hash_password(password: str) -> Credential:
    """A new credential for `password`: a fresh random salt, today's parameters."""
    salt = os.urandom(SALT_BYTES)
    return Credential(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt,
                      _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))


def verify_password(password: str, credential: Credential | None) -> bool:
    """Whether `password` matches `credential`, compared in constant time.

    With no credential (a name that is no account) a hash is computed all the
    same and the answer is False, so both cases cost the same time.
    """
    if credential is None:
        _scrypt(password, os.urandom(SALT_BYTES), SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return False
    computed = _scrypt(password, credential.salt, credential.n, credential.r, credential.p)
    return hmac.compare_digest(computed, credential.hash)


def check(job: CheckPassword) -> PasswordChecked:
    """Do what `job` asks (on the worker): verify `password`, hash `new` if it matched."""
    ok = True
    if job.password is not None:
        ok = verify_password(job.password, job.credential)
    credential = hash_password(job.new) if ok and job.new is not None else None
    return PasswordChecked(job, ok, credential)


def guarded_check(job: CheckPassword) -> PasswordChecked:
    """`check(job)`, or, if it raises (a credential on file with parameters scrypt
    refuses, memory scrypt cannot have), a failed completion: the session
    that waits for it is answered `unavailable` instead of waiting forever.

    Logged without a traceback or the exception's arguments, which could
    hold the password (a UnicodeEncodeError keeps the whole string).
    """
    try:
        return check(job)
    except Exception as exc:
        # The credential's repr is its parameters only (the likely culprit).
        log.error("password check failed (%s) against %r", type(exc).__name__,
                  job.credential)
        return PasswordChecked(job, None, failed=True)


class AccountLink:
    """The loop's side of password hashing: `CheckPassword` effects in, completions out.

    `complete(completion)` is the chat service's.  `hashes` counts the jobs
    handed to the worker, `failures` those that raised (for metrics).
    """

    def __init__(self, loop, complete, max_backlog: int = MAX_BACKLOG):
        self.loop = loop
        self.complete = complete
        self.worker = Worker(loop, "chatd-accounts", max_backlog)
        self.hashes = 0
        self.failures = 0

    def take(self, effect: CheckPassword) -> None:
        """Queue one check; a full queue answers `unavailable` (in a later callback)."""
        if self.worker.submit(lambda: guarded_check(effect), self._done):
            self.hashes += 1
        else:
            self.loop.call_soon(self.complete, PasswordChecked(effect, None))

    def _done(self, completion: PasswordChecked) -> None:
        if completion.failed:
            self.failures += 1
        self.complete(completion)

    def close(self, timeout: float) -> bool:
        """Let the worker finish what it has; True if it ended in `timeout` s."""
        return self.worker.stop(timeout)
