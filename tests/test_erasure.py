import itertools
import math

import numpy as np
import pytest

from lcc_jax import erasure


@pytest.mark.parametrize("k,r,expected", [(2, 1, 2), (4, 1, 4), (4, 2, 14), (10, 4, 1000)])
def test_pattern_counts(k, r, expected):
  unavail_PxN = erasure.patterns(k, r)
  assert unavail_PxN.shape == (expected, k + r)
  assert expected == math.comb(k + r, r) - 1
  assert (unavail_PxN.sum(axis=1) == r).all()
  assert unavail_PxN[:, :k].any(axis=1).all()  # never only parities
  assert len({row.tobytes() for row in unavail_PxN}) == expected


def test_r1_is_upstreams_k_patterns():
  # Upstream pattern s erases data slot s and never the parity (docs/upstream.md §Erasure patterns).
  np.testing.assert_array_equal(erasure.patterns(3, 1), np.eye(3, 4, dtype=bool))


def test_at_most_and_beyond_counts_by_enumeration():
  k, r = 4, 2
  n = k + r
  def brute(sizes):
    return sum(1 for e in sizes for c in itertools.combinations(range(n), e) if min(c) < k)
  assert erasure.patterns(k, r, "at_most").shape[0] == brute([1, 2]) == 4 + 14
  assert erasure.patterns(k, r, "beyond").shape[0] == brute(range(3, n + 1))
  assert erasure.count(k, r, "beyond") == brute(range(3, n + 1))


def test_order_is_size_then_lexicographic():
  rows = erasure.unavailable_slots(erasure.patterns(3, 2, "at_most"))
  assert rows[:3] == [[0], [1], [2]]
  assert rows[3:] == [list(c) for c in itertools.combinations(range(5), 2) if c[0] < 3]


def test_explicit_list_and_errors():
  unavail = erasure.from_list(3, 1, [[0], [1, 3]])
  assert erasure.unavailable_slots(unavail) == [[0], [1, 3]]
  for bad, match in [([[3]], "only parity"), ([[0, 0]], "distinct"), ([[5]], "distinct"),
                     ([], "empty"), ([[0], [0]], "repeats"), ([[]], "at least one")]:
    with pytest.raises(ValueError, match=match):
      erasure.from_list(3, 1, bad)


@pytest.mark.parametrize("k,r", [(0, 1), (2, -1), (2.0, 1), (True, 1)])
def test_invalid_k_r(k, r):
  with pytest.raises(ValueError, match="must be an integer"):
    erasure.patterns(k, r)


def test_too_many_patterns_needs_explicit_limit():
  with pytest.raises(ValueError, match="limit"):
    erasure.patterns(30, 5)
  assert erasure.patterns(10, 4, limit=1000).shape[0] == 1000
  with pytest.raises(ValueError, match="unknown pattern mode"):
    erasure.patterns(2, 1, "some")


def test_pattern_probabilities_sum_to_one_over_all_subsets():
  k, r, f = 3, 2, 0.2
  everything = np.array([[bool(m >> i & 1) for i in range(k + r)] for m in range(2**(k + r))])
  assert np.isclose(erasure.probability(everything, f).sum(), 1.0)
