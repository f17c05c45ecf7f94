"""RCU epoch and latency histogram kernels against their pure-Python twins."""

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from jit import latency, rcu
from jit.naive import latency as naive_latency, rcu as naive_rcu

slots_st = st.lists(st.integers(min_value=0, max_value=1 << 40), max_size=64)


@settings(max_examples=200, deadline=None)
@given(slots_st, st.integers(min_value=0, max_value=1 << 40))
def test_epoch_checks_match_reference(slots, epoch):
    arr = np.array(slots, dtype=np.int64)
    assert rcu.min_active_epoch(arr) == naive_rcu.min_active_epoch(slots)
    assert rcu.readers_at_or_before(arr, epoch) == naive_rcu.readers_at_or_before(slots, epoch)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**9)), max_size=32), st.integers(10**9, 2 * 10**9))
def test_oldest_reader_matches_reference(pairs, now):
    slots = np.array([p[0] for p in pairs], dtype=np.int64)
    entered = np.array([p[1] for p in pairs], dtype=np.int64)
    assert rcu.oldest_reader_since(slots, entered, now) == naive_rcu.oldest_reader_since(slots, entered, now)


def test_empty_slots_mean_no_reader():
    assert rcu.min_active_epoch(np.zeros(8, dtype=np.int64)) == -1


BASE, SUB, N = 100.0, 8, 220


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(0, 1e12, allow_nan=False), st.integers(0, 200).map(lambda b: BASE * 2.0 ** (b / SUB))))
def test_bucket_matches_reference_including_exact_edges(value):
    assert latency.bucket_of(value, BASE, SUB, N) == naive_latency.bucket_of(value, BASE, SUB, N)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(1, 1e9, allow_nan=False), min_size=1, max_size=300), st.sampled_from([0.5, 0.9, 0.99, 0.999]))
def test_quantile_matches_reference_and_bounds_true_value(values, q):
    counts = np.zeros(N, dtype=np.int64)
    for v in values:
        counts[latency.bucket_of(v, BASE, SUB, N)] += 1
    got = latency.quantile(counts, q, BASE, SUB)
    assert got == naive_latency.quantile(counts, q, BASE, SUB)
    true = sorted(values)[max(0, math.ceil(q * len(values)) - 1)]
    # The reported value is the bucket's upper edge: never below the truth, at most one bucket above.
    assert true <= got * (1 + 1e-9) or true < BASE
    assert got <= max(true, BASE) * 2 ** (1 / SUB) * (1 + 1e-9)


def test_quantile_of_empty_histogram_is_nan():
    assert math.isnan(latency.quantile(np.zeros(N, dtype=np.int64), 0.99, BASE, SUB))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-9, 100.0), st.integers(0, 5)), max_size=50))
def test_record_in_fills_total_and_one_window_like_the_reference(observations):
    total = np.zeros(218, np.int64)
    windows = np.zeros((6, 218), np.int64)
    sums = np.zeros(6)
    want_total, want_windows, want_sums = np.zeros_like(total), np.zeros_like(windows), [0.0] * 6
    for value, w in observations:
        latency.record_in(total, windows, sums, w, value, 1e-7, 8)
        b = naive_latency.bucket_of(value, 1e-7, 8, 218)
        want_total[b] += 1
        want_windows[w, b] += 1
        want_sums[w] += value
    assert (total == want_total).all() and (windows == want_windows).all()
    assert np.allclose(sums, want_sums)
