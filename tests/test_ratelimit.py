"""framing.TokenBucket, the rate limit both chatd and chatcli count with.

Times are passed in, never read from a clock, so nothing here sleeps.
"""

from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from framing import TokenBucket

# ---------------------------------------------------------------- examples


def takes(bucket: TokenBucket, now: float, count: int) -> list[bool]:
    return [bucket.take(now) for _ in range(count)]


def test_a_full_bucket_gives_its_burst_at_once_then_one_token_per_interval():
    bucket = TokenBucket(rate=2.0, burst=3.0, now=0.0)
    assert takes(bucket, 0.0, 4) == [True, True, True, False]
    assert bucket.take(0.25) is False   # half a token
    assert takes(bucket, 0.5, 2) == [True, False]
    assert takes(bucket, 1.5, 3) == [True, True, False]


def test_the_bucket_never_holds_more_than_burst():
    bucket = TokenBucket(rate=10.0, burst=3.0, now=0.0)
    assert takes(bucket, 1000.0, 4) == [True, True, True, False]
    assert bucket.wait(1000.0) == pytest.approx(0.1)


def test_a_bucket_can_start_short():
    # chatcli's: the hello took one of the burst before the limit was known.
    bucket = TokenBucket(rate=1.0, burst=20.0, now=5.0, tokens=19.0)
    assert takes(bucket, 5.0, 20) == [True] * 19 + [False]


def test_wait_is_the_exact_time_to_the_next_whole_token():
    bucket = TokenBucket(rate=4.0, burst=2.0, now=0.0)
    assert bucket.wait(0.0) == 0.0
    assert takes(bucket, 0.0, 2) == [True, True]
    assert bucket.wait(0.0) == 0.25
    assert bucket.wait(0.125) == 0.125   # the time since the last take counts
    assert bucket.wait(10.0) == 0.0
    assert bucket.take(0.1875) is False  # a sixteenth of a second early
    assert bucket.take(0.25) is True     # exactly on time


def test_wait_reads_and_changes_nothing():
    bucket = TokenBucket(rate=4.0, burst=2.0, now=0.0, tokens=0.0)
    before = (bucket.tokens, bucket.refilled_at)
    bucket.wait(3.0)
    assert (bucket.tokens, bucket.refilled_at) == before


def test_a_refused_take_spends_nothing():
    refused = TokenBucket(rate=2.0, burst=1.0, now=0.0, tokens=0.0)
    untouched = TokenBucket(rate=2.0, burst=1.0, now=0.0, tokens=0.0)
    assert refused.take(0.25) is False
    assert refused.tokens == 0.5
    # The half token refilled by the refused take is still there at 0.5.
    assert refused.take(0.5) is True
    assert untouched.take(0.5) is True
    assert refused.tokens == untouched.tokens == 0.0


# -------------------------------------------------------------- properties

# On this grid every quantity (times, rates, tokens, waits) is a dyadic
# fraction well inside a double's 53 bits, so the float bucket must agree
# with an exact model to the last bit rather than up to rounding.
GRID = 64
rates = st.sampled_from([1, 2, 4, 8, 16])
bursts = st.integers(min_value=1, max_value=30)
# (seconds since the previous step, take or only ask wait)
steps = st.lists(st.tuples(st.integers(min_value=0, max_value=2 * GRID).map(
    lambda ticks: Fraction(ticks, GRID)), st.booleans()), max_size=60)


class Model:
    """The contract in exact arithmetic: refill at `rate`, cap at `burst`,
    a request is served iff a whole token is there, and it costs one."""

    def __init__(self, rate, burst, tokens):
        self.rate, self.burst, self.tokens, self.at = rate, burst, tokens, Fraction(0)

    def take(self, now) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@given(rates, bursts, st.data(), steps)
def test_the_bucket_is_the_exact_model(rate, burst, data, run):
    start = data.draw(st.integers(min_value=0, max_value=burst * GRID)
                      .map(lambda ticks: Fraction(ticks, GRID)), label="tokens")
    bucket = TokenBucket(float(rate), float(burst), 0.0, tokens=float(start))
    model = Model(rate, burst, start)
    now = Fraction(0)
    for dt, take in run:
        now += dt
        if take:
            assert bucket.take(float(now)) is model.take(now)
            assert Fraction(bucket.tokens) == model.tokens
        else:
            wait = bucket.wait(float(now))
            # wait() is 0 exactly when a take would succeed, and otherwise
            # the time at which the model's refill reaches one whole token.
            refilled = min(model.burst, model.tokens + (now - model.at) * rate)
            assert Fraction(wait) == max(Fraction(0), (1 - refilled) / rate)


@given(rates, bursts, steps)
def test_no_run_of_takes_beats_burst_plus_rate_times_its_length(rate, burst, run):
    bucket = TokenBucket(float(rate), float(burst), 0.0)
    times, served = [], []
    now = Fraction(0)
    for dt, take in run:
        now += dt
        if not take:
            continue
        served.append(bucket.take(float(now)))
        times.append(now)
        assert 0 <= bucket.tokens <= burst
    for first in range(len(times)):
        for last in range(first, len(times)):
            count = sum(served[first:last + 1])
            assert count <= burst + rate * (times[last] - times[first])


@given(st.floats(min_value=0.01, max_value=1000.0), st.integers(min_value=1, max_value=100),
       st.lists(st.tuples(st.floats(min_value=0.0, max_value=5.0), st.booleans()),
                max_size=60))
def test_any_float_rate_keeps_the_tokens_within_zero_and_burst(rate, burst, run):
    bucket = TokenBucket(rate, float(burst), 0.0)
    now, served = 0.0, 0
    for dt, take in run:
        now += dt
        if take:
            served += bucket.take(now)
            assert 0.0 <= bucket.tokens <= burst
        else:
            assert bucket.wait(now) >= 0.0
    # Rounding may give a sliver of a token, never a whole extra request.
    assert served <= burst + rate * now + 1e-6
