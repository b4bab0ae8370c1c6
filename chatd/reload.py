"""SIGHUP: read the settings again and apply, all or nothing, what may change while serving.

What is read is what a start reads (the same flags, the environment, the
TOML file given with --config), so a reload equals a restart with the
file's new contents, minus the restart.  Settings in LIVE apply to new work
at once: a new connection's welcome, the next read, flush or timer; a
connection keeps the rate bucket it has.  A change to any other setting
(where chatd listens, the store, sizes fixed at start) refuses the whole
reload, as does a file that does not parse or a value out of range: then
nothing changes and the log says why.
"""

import dataclasses

from .config import Config

# The settings a reload may change.
LIVE = frozenset((
    "log_level", "rate_limit", "rate_burst", "presence_limit", "max_clients",
    "handshake_timeout", "idle_timeout", "output_hard_limit", "output_soft_limit",
    "output_soft_seconds", "write_per_turn", "flush_linger", "max_bad_messages",
    "accepts_per_turn", "shutdown_timeout", "retention", "max_rooms", "max_rooms_per_user",
    "accounts", "login_failures", "login_window", "tls_cert", "tls_key", "tls_client_ca",
    "guests", "address_connections", "address_connects", "address_window",
    "limit_loopback",
))


class ReloadRefused(ValueError):
    """The new settings change what a running chatd cannot (listed in the message)."""


def changes(old: Config, new: Config) -> dict[str, tuple]:
    """{setting: (old value, new value)} for what differs; ReloadRefused if any of
    it is outside LIVE (all of those are named)."""
    differ = {setting.name: (getattr(old, setting.name), getattr(new, setting.name))
              for setting in dataclasses.fields(Config)
              if getattr(old, setting.name) != getattr(new, setting.name)}
    fixed = sorted(name for name in differ if name not in LIVE)
    if fixed:
        raise ReloadRefused("cannot change while serving: " + ", ".join(
            f"{name} ({_shown(name, differ[name][0])!r} -> {_shown(name, differ[name][1])!r})"
            for name in fixed))
    return differ


def _shown(name: str, value):
    """A setting's value as a log line may show it: no cluster password."""
    if name == "cluster":
        from .cluster.resp import redacted
        return redacted(value)
    return value
