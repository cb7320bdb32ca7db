"""Seeded persisted splits and k-grouping, against upstream's numbers (docs/upstream.md §Splits and
grouping)."""
import collections

import numpy as np
import pytest

from lcc_jax.data import group_indices, make_split


@pytest.mark.parametrize("num_train, k, num_val, num_left", [
    (60000, 2, 5000, 55000),  # MNIST / Fashion-MNIST
    (60000, 3, 5001, 54999),
    (50000, 3, 5001, 44997),  # CIFAR: 49998 usable
    (50000, 4, 5000, 45000),
])
def test_split_sizes_match_upstream(num_train, k, num_val, num_left):
  split = make_split(num_train, k, 5000, seed=0, workdir=None)
  assert (len(split["val"]), len(split["train"])) == (num_val, num_left)
  assert len(split["val"]) % k == 0 and len(split["train"]) % k == 0
  both = np.concatenate([split["val"], split["train"]])
  assert len(np.unique(both)) == len(both)  # no example in two splits
  assert both.min() >= 0 and both.max() < num_train // k * k


def test_split_is_persisted_and_checked(tmp_path):
  first = make_split(100, 3, 10, seed=7, workdir=str(tmp_path), name="digits", num_test=20)
  assert (tmp_path / "split.npz").exists()
  np.testing.assert_array_equal(first["test"], np.arange(18))
  # A later run reads the file back (even if the RNG changed, the stored split wins).
  again = make_split(100, 3, 10, seed=7, workdir=str(tmp_path), name="digits", num_test=20)
  for key in ("train", "val", "test"):
    np.testing.assert_array_equal(first[key], again[key])
  with pytest.raises(ValueError, match="split.npz holds the split of"):
    make_split(100, 2, 10, seed=7, workdir=str(tmp_path), name="digits", num_test=20)


def test_split_depends_on_seed_only():
  a, b, c = (make_split(1000, 2, 100, seed=s, workdir=None) for s in (0, 0, 1))
  np.testing.assert_array_equal(a["val"], b["val"])
  assert not np.array_equal(a["val"], c["val"])


def test_val_size_that_leaves_nothing_is_rejected():
  with pytest.raises(ValueError, match="smaller data.val_size"):
    make_split(10, 2, 10, seed=0, workdir=None)


def test_upstream_iterations_per_epoch():
  """MNIST k=2, batch 64: 430 train and 40 val iterations (upstream README)."""
  split = make_split(60000, 2, 5000, seed=0, workdir=None)
  idx, weight = group_indices(split["train"], 2, 64, shuffle=True)
  assert idx.shape == (430, 64, 2) and weight.shape == (430, 64)
  assert group_indices(split["val"], 2, 64, shuffle=False)[0].shape == (40, 64, 2)


def test_groups_cover_the_split_once_and_pad_with_weight_zero():
  indices = np.arange(100, 123)  # 23 examples, k=3 → 7 groups, 2 left over
  idx, weight = group_indices(indices, 3, 4, shuffle=True, seed=1, epoch=2)
  assert idx.dtype == np.int32 and weight.dtype == np.float32
  assert idx.shape == (2, 4, 3) and weight.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
  real = idx[weight > 0]
  assert sorted(real.ravel().tolist()) == list(range(100, 121))  # the tail of 2 is dropped
  assert (idx[weight == 0] == 100).all()  # padding points at a valid example


def test_eval_groups_are_fixed_consecutive_indices():
  indices = np.array([9, 4, 7, 1, 3, 8, 2])
  idx, weight = group_indices(indices, 2, 2, shuffle=False, epoch=5)
  assert idx.tolist() == [[[9, 4], [7, 1]], [[3, 8], [9, 9]]]
  assert weight.tolist() == [[1, 1], [1, 0]]
  np.testing.assert_array_equal(idx, group_indices(indices, 2, 2, shuffle=False, epoch=6)[0])


def test_train_groups_are_redrawn_per_epoch_and_reproducible():
  indices = np.arange(60)
  e0 = group_indices(indices, 2, 8, shuffle=True, seed=3, epoch=0)[0]
  e0_again = group_indices(indices, 2, 8, shuffle=True, seed=3, epoch=0)[0]
  e1 = group_indices(indices, 2, 8, shuffle=True, seed=3, epoch=1)[0]
  other_seed = group_indices(indices, 2, 8, shuffle=True, seed=4, epoch=0)[0]
  np.testing.assert_array_equal(e0, e0_again)
  assert not np.array_equal(e0, e1) and not np.array_equal(e0, other_seed)
  pairs = lambda idx: collections.Counter(map(tuple, idx.reshape(-1, 2)[:30]))
  assert pairs(e0) != pairs(e1)  # new groups, not just the same groups reordered


def test_process_shards_partition_the_batch_dimension():
  indices = np.arange(50)
  full_idx, full_w = group_indices(indices, 2, 8, shuffle=True, seed=0, epoch=3)
  shards = [group_indices(indices, 2, 8, shuffle=True, seed=0, epoch=3, process_index=p,
                          process_count=4) for p in range(4)]
  assert all(s[0].shape == (full_idx.shape[0], 2, 2) for s in shards)
  np.testing.assert_array_equal(np.concatenate([s[0] for s in shards], axis=1), full_idx)
  np.testing.assert_array_equal(np.concatenate([s[1] for s in shards], axis=1), full_w)
  with pytest.raises(ValueError, match="divisible by process_count=3"):
    group_indices(indices, 2, 8, shuffle=False, process_count=3)
