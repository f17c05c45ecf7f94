"""xxh64 kernel vs its pure-Python twin vs the reference ``xxhash`` library."""

import os

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings, strategies as st

from jit.naive.xxh64 import xxh64_ref
from jit.xxh64 import xxh64, xxh64_batch
from valkyrie.keys import pack_keys

SEEDS = [0, 1, 0x9E3779B185EBCA87, 2**63, 2**64 - 1]

# Each length class exercises a different tail path of the algorithm.
LENGTHS = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 24, 31, 32, 33, 35, 39, 40, 63, 64, 65, 100, 257]

# Known-answer vectors: XXH64 of the empty string is part of the spec's test suite.
KNOWN = [(b"", 0, 0xEF46DB3751D8E999), (b"a", 0, 0xD24EC4F1A98C6E5B),
         (b"abc", 0, 0x44BC2CF5AD770999)]


def _one(key, seed):
    """Hash ``key`` through the single-key kernel, placed at an odd arena offset."""
    arena = np.frombuffer(b"\x00\x01\x02" + key + b"\xff", dtype=np.uint8)
    return int(xxh64(arena, 3, len(key), np.uint64(seed)))


@pytest.mark.parametrize("key,seed,expected", KNOWN)
def test_known_answers(key, seed, expected):
    assert xxh64_ref(key, seed) == expected
    assert xxhash.xxh64_intdigest(key, seed) == expected
    assert _one(key, seed) == expected


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", LENGTHS)
def test_every_length_class(n, seed):
    key = os.urandom(n)
    expected = xxhash.xxh64_intdigest(key, seed)
    assert xxh64_ref(key, seed) == expected
    assert _one(key, seed) == expected


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_matches_single(seed):
    rng = np.random.default_rng(seed % 2**32)
    keys = [rng.bytes(int(n)) for n in rng.integers(0, 80, size=500)] + [b"", b"", b"\x00" * 32]
    data, offsets = pack_keys(keys)
    got = xxh64_batch(data, offsets, np.uint64(seed))
    assert got.dtype == np.uint64 and got.shape == (len(keys),)
    assert [int(h) for h in got] == [xxhash.xxh64_intdigest(k, seed) for k in keys]


def test_batch_empty_and_all_empty_keys():
    data, offsets = pack_keys([])
    assert xxh64_batch(data, offsets, np.uint64(0)).shape == (0,)
    data, offsets = pack_keys([b"", b""])
    assert list(xxh64_batch(data, offsets, np.uint64(7))) == [xxhash.xxh64_intdigest(b"", 7)] * 2


def test_high_bytes_do_not_sign_extend():
    # 0xFF bytes catch int8/sign-extension mistakes in lane assembly.
    for n in (1, 4, 8, 32, 40):
        key = b"\xff" * n
        assert _one(key, 0) == xxhash.xxh64_intdigest(key, 0)


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=300), seed=st.integers(0, 2**64 - 1))
def test_property_matches_reference(key, seed):
    expected = xxhash.xxh64_intdigest(key, seed)
    assert xxh64_ref(key, seed) == expected
    assert _one(key, seed) == expected
