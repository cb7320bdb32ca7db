import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lcc_jax import erasure, optim, steps
from tests.helpers import tiny_code, tiny_data


def _setup(trainable=("encoder", "decoder"), k=2, r=1, lr=1e-3):
  code, variables = tiny_code(k, r)
  data = tiny_data(code, variables, k=k)
  tx = optim.make_tx("adam", lr=lr, weight_decay=1e-5)
  state, frozen = steps.init_state(variables, trainable, tx, jax.random.key(3))
  idx_BxK = jnp.arange(8 * k, dtype=jnp.int32).reshape(8, k)
  return code, tx, state, frozen, data, idx_BxK


def test_twenty_steps_leave_f_bit_identical_and_loss_falls():
  code, tx, state, frozen, data, idx_BxK = _setup(lr=1e-2)
  unavail_PxN = erasure.patterns(2, 1)
  before = jax.tree.map(np.array, frozen)
  traces = []

  def counted(*args, **kwargs):
    traces.append(1)
    return steps.train_step(*args, **kwargs)

  step = jax.jit(lambda *a: counted(*a, code=code, tx=tx, loss="kl"), donate_argnums=0)
  losses = []
  for _ in range(20):
    state, out = step(state, frozen, data, idx_BxK, jnp.ones(8), unavail_PxN)
    losses.append(float(out["loss"]))
  assert len(traces) == 1
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, frozen))
  assert losses[-1] < 0.5 * losses[0], losses
  assert int(state.step) == 20


def test_optimizer_state_holds_only_trainable_leaves():
  code, tx, state, frozen, data, idx = _setup(trainable=("decoder",))
  assert set(state.params) == {"decoder"}
  assert set(frozen) == {"encoder", "base_model"}
  n_trainable = len(jax.tree.leaves(state.params))
  adam_state = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda s: isinstance(
      s, optax.ScaleByAdamState)) if isinstance(s, optax.ScaleByAdamState)]
  assert len(adam_state) == 1
  assert len(jax.tree.leaves(adam_state[0].mu)) == n_trainable
  assert len(jax.tree.leaves(adam_state[0].nu)) == n_trainable
  # Everything array-valued in the optimizer state: two moments per leaf and a step count.
  assert len(jax.tree.leaves(state.opt_state)) == 2 * n_trainable + 1


def test_frozen_encoder_does_not_move_and_decoder_does():
  code, tx, state, frozen, data, idx = _setup(trainable=("decoder",))
  dec_before = jax.tree.map(np.array, state.params["decoder"])
  step = steps.jit_train_step(code, tx, "mse")
  for _ in range(3):
    state, _ = step(state, frozen, data, idx, jnp.ones(8), erasure.patterns(2, 1))
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), dec_before,
                       state.params["decoder"])
  assert all(jax.tree.leaves(moved))


def test_adam_with_l2_matches_torch_semantics_by_hand():
  # One Adam step with coupled L2: g' = g + wd·w; update = -lr·m̂/(√v̂+eps) = -lr·sign(g').
  tx = optim.make_tx("adam", lr=0.1, weight_decay=0.5)
  w = {"a": jnp.array([1.0, -2.0])}
  g = {"a": jnp.array([0.3, 1.5])}
  updates, _ = tx.update(g, tx.init(w), w)
  g_prime = np.array([0.3 + 0.5, 1.5 - 1.0])
  np.testing.assert_allclose(updates["a"], -0.1 * g_prime / (np.abs(g_prime) + 1e-8), rtol=1e-5)


def test_unknown_component_is_rejected():
  code, variables = tiny_code()
  with pytest.raises(ValueError, match="can be trained"):
    steps.split_variables(variables, ["base_model"])


def test_eval_counts_cover_every_pattern_and_padding_is_ignored():
  code, tx, state, frozen, data, idx = _setup(k=3, r=2)
  unavail_PxN = erasure.patterns(3, 2)
  ev = steps.jit_eval_step(code, "kl")
  weight = jnp.array([1.0] * 6 + [0.0] * 2)
  counts = ev(state.params, state.model_state, frozen, data, idx, weight, unavail_PxN)
  # Each pattern scores 6 real groups × its unavailable data slots.
  np.testing.assert_array_equal(counts["n"], 6 * unavail_PxN[:, :3].sum(axis=1))
  assert int(counts["base_n"]) == 18


def test_cosine_lr_schedule_follows_the_formula():
  """SGD on a constant gradient moves by the learning rate itself: 0.5·lr·(1 + cos(π t / T))."""
  tx = optim.make_tx("sgd", lr=0.1, weight_decay=0.0, lr_schedule="cosine", total_steps=10)
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  moves = []
  for _ in range(11):
    updates, state = tx.update({"w": jnp.ones(())}, state, params)
    moves.append(-float(updates["w"]))
  expected = [0.05 * (1 + np.cos(np.pi * t / 10)) for t in range(11)]
  np.testing.assert_allclose(moves, expected, rtol=1e-6, atol=1e-9)
  constant = optim.make_tx("sgd", lr=0.1, weight_decay=0.0)
  updates, _ = constant.update({"w": jnp.ones(())}, constant.init(params), params)
  assert -float(updates["w"]) == pytest.approx(0.1)


def test_unknown_lr_schedule_is_one_line():
  with pytest.raises(ValueError, match="lr_schedule='linear'"):
    optim.make_tx(lr_schedule="linear", total_steps=5)
