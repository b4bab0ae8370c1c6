"""Shared test configuration: hypothesis profiles."""

import os

from hypothesis import HealthCheck, settings

# CI asks for at least 200 examples per property; locally 100 keep the loop quick.
settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
