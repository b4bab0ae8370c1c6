"""Shared test configuration: hypothesis profiles, and chatcli's state kept in a
temporary directory (never the user's ~/.local/state), for every chatcli the
tests start."""

import os
import tempfile

from hypothesis import HealthCheck, settings

# CI asks for at least 200 examples per property; locally 100 keep the loop quick.
settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

_STATE = tempfile.TemporaryDirectory(prefix="chatcli-state-")
os.environ["XDG_STATE_HOME"] = _STATE.name
os.environ.pop("CHATCLI_STATE", None)
