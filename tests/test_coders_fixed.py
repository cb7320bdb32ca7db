"""Fixed codes: sum/sub, mds, concat and the channel modes, against independent expectations."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcc_jax import coding, erasure, nn, registry
from lcc_jax.coders import channels, concat, mds

# docs/upstream.md §Channel grouping: the planes upstream's reshape puts in encoder row (= parity
# channel) j.
UPSTREAM_ROWS = {
    2: [["i0.R", "i0.G"], ["i0.B", "i1.R"], ["i1.G", "i1.B"]],
    3: [["i0.R", "i0.G", "i0.B"], ["i1.R", "i1.G", "i1.B"], ["i2.R", "i2.G", "i2.B"]],
    4: [["i0.R", "i0.G", "i0.B", "i1.R"], ["i1.G", "i1.B", "i2.R", "i2.G"],
        ["i2.B", "i3.R", "i3.G", "i3.B"]],
    5: [["i0.R", "i0.G", "i0.B", "i1.R", "i1.G"], ["i1.B", "i2.R", "i2.G", "i2.B", "i3.R"],
        ["i3.G", "i3.B", "i4.R", "i4.G", "i4.B"]],
}


def linear_f(input_shape, num_classes, seed=0):
  """F(x) = W·flatten(x), no bias: every linear code is exact with it."""
  w = np.random.default_rng(seed).normal(size=(int(np.prod(input_shape)), num_classes))

  def apply(variables, x, train=False):
    del train
    return x.reshape(x.shape[0], -1) @ variables["params"]["w"], {}

  return nn.ModelFns(init=lambda rng: {"params": {"w": jnp.asarray(w)}}, apply=apply)


def run_code(encoder, decoder, x, unavail_PxN, num_classes=4):
  """coding.forward with a linear F run on the parities; returns (recon_PxBxKxC, y_BxKxC)."""
  f = linear_f(x.shape[2:], num_classes)
  variables = {"encoder": {}, "decoder": {}, "base_model": f.init(None)}
  y, _ = coding.apply_per_example(f, variables["base_model"], x)
  code = coding.Code(encoder=encoder, decoder=decoder, base_model=f)
  forward = jax.jit(lambda v, x, y, u: coding.forward(code, v, x, y, u))
  recon, pout, _ = forward(variables, x, y, unavail_PxN)
  return np.asarray(recon), np.asarray(y), np.asarray(pout)


def _x(shape, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_sum_sub_exact_with_linear_f(k):
  with jax.enable_x64(True):
    shape = (4, 4, 3)
    enc = registry.build("encoder", "sum", k=k, r=1, input_shape=shape)
    dec = registry.build("decoder", "sub", k=k, r=1, num_classes=4)
    x = _x((5, k) + shape)
    recon, y, pout = run_code(enc, dec, x, erasure.patterns(k, 1))
    np.testing.assert_allclose(recon, np.broadcast_to(y, recon.shape), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pout, np.asarray(dec.parity_target(jnp.asarray(y))), atol=1e-10)
    np.testing.assert_allclose(pout[:, 0], y.sum(axis=1), atol=1e-10)


def test_sub_decoder_formula():
  """Unavailable slot j: F_P(P) − Σ_{available} F(X_i); other slots pass through."""
  outs = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
  dec = registry.build("decoder", "sub", k=3, r=1, num_classes=3)
  avail = np.array([True, False, True, True])
  masked = np.where(avail[None, :, None], outs, 0.0)
  recon, _ = dec.apply({}, jnp.asarray(masked), jnp.asarray(avail))
  want = outs[:, :3].copy()
  want[:, 1] = outs[:, 3] - outs[:, 0] - outs[:, 2]
  np.testing.assert_array_equal(np.asarray(recon), want)


@pytest.mark.parametrize("generator", ["cauchy", "vandermonde"])
@pytest.mark.parametrize("k,r", [(3, 1), (3, 2), (3, 3), (2, 3), (4, 2)])
def test_mds_recovers_every_pattern_exactly(k, r, generator):
  with jax.enable_x64(True):
    shape = (6,)
    enc = registry.build("encoder", "mds", k=k, r=r, input_shape=shape, generator=generator)
    dec = registry.build("decoder", "mds", k=k, r=r, num_classes=4, generator=generator)
    unavail_PxN = erasure.patterns(k, r, "at_most")
    recon, y, pout = run_code(enc, dec, _x((3, k) + shape), unavail_PxN)
    np.testing.assert_allclose(recon, np.broadcast_to(y, recon.shape), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pout, np.asarray(dec.parity_target(jnp.asarray(y))), atol=1e-10)


def test_mds_generator_is_mds_and_scaled():
  """Every square submatrix invertible; first parity = plain sum; mean |a| = 1 per row."""
  for generator, k, r in itertools.product(["cauchy", "vandermonde"], range(1, 7), range(1, 5)):
    a = mds.generator_matrix(k, r, generator)
    assert a.shape == (r, k)
    np.testing.assert_allclose(a[0], 1.0)
    np.testing.assert_allclose(np.abs(a).mean(axis=1), 1.0)
    for size in range(1, min(k, r) + 1):
      for rows in itertools.combinations(range(r), size):
        for cols in itertools.combinations(range(k), size):
          assert abs(np.linalg.det(a[np.ix_(rows, cols)])) > 1e-9, (generator, k, r, rows, cols)


def test_mds_r1_is_sum_sub():
  shape = (4, 4, 3)
  x = _x((2, 3) + shape).astype(jnp.float32)
  p_mds, _ = registry.build("encoder", "mds", k=3, r=1, input_shape=shape).apply({}, x)
  p_sum, _ = registry.build("encoder", "sum", k=3, r=1, input_shape=shape).apply({}, x)
  np.testing.assert_allclose(np.asarray(p_mds), np.asarray(p_sum), rtol=1e-6, atol=1e-6)
  outs = _x((2, 4, 5), seed=2).astype(jnp.float32)
  for unavail in erasure.patterns(3, 1, "at_most"):
    avail = jnp.asarray(~unavail)
    masked = jnp.where(avail[None, :, None], outs, 0.0)
    a, _ = registry.build("decoder", "mds", k=3, r=1, num_classes=5).apply({}, masked, avail)
    b, _ = registry.build("decoder", "sub", k=3, r=1, num_classes=5).apply({}, masked, avail)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_mds_beyond_r_is_min_norm_least_squares():
  """More missing data than available parities: numpy's minimum-norm lstsq, others kept."""
  with jax.enable_x64(True):
    k, r = 4, 2
    a = mds.generator_matrix(k, r)
    dec = registry.build("decoder", "mds", k=k, r=r, num_classes=3)
    outs = np.random.default_rng(3).normal(size=(2, k + r, 3))
    for unavail in erasure.patterns(k, r, "beyond"):
      avail = ~unavail
      masked = np.where(avail[None, :, None], outs, 0.0)
      recon, _ = dec.apply({}, jnp.asarray(masked), jnp.asarray(avail))
      miss, par = np.flatnonzero(unavail[:k]), np.flatnonzero(avail[k:])
      want = masked[:, :k].copy()
      for b in range(2):
        resid = masked[b, k + par] - a[par][:, avail[:k]] @ masked[b, np.flatnonzero(avail[:k])]
        if len(par):
          want[b, miss] = np.linalg.lstsq(a[np.ix_(par, miss)], resid, rcond=None)[0]
      np.testing.assert_allclose(np.asarray(recon), want, atol=1e-9)


def _labelled_rgb(k, h=4, w=4):
  """(1, k, h, w, 3) with plane (image i, channel c) = 2^(3i + c): sums identify the planes."""
  label = 2.0 ** (3 * np.arange(k)[:, None] + np.arange(3)[None, :])
  return jnp.asarray(np.broadcast_to(label[None, :, None, None, :], (1, k, h, w, 3)).copy())


def _planes_of(value, k):
  bits = int(round(value))
  return [f"i{i}.{'RGB'[c]}" for i in range(k) for c in range(3) if bits >> (3 * i + c) & 1]


@pytest.mark.parametrize("k", sorted(UPSTREAM_ROWS))
def test_upstream_channel_mode_reproduces_reference_table(k):
  with jax.enable_x64(True):
    x = _labelled_rgb(k)
    # What a learned encoder sees: row j of the planes, in order.
    planes = np.asarray(channels.to_planes(x, "upstream"))[:, :, 0]
    assert [[_planes_of(v, k)[0] for v in row] for row in planes] == UPSTREAM_ROWS[k]
    # The sum parity's channel j is the sum of exactly those planes.
    enc = registry.build("encoder", "sum", k=k, r=1, input_shape=(4, 4, 3),
                         channel_mode="upstream")
    parity = np.asarray(enc.apply({}, x)[0])
    assert [_planes_of(parity[0, 0, 0, 0, c], k) for c in range(3)] == UPSTREAM_ROWS[k]
    assert np.all(parity == parity[:, :, :1, :1, :])
    # per_channel: parity channel c = channel c of every image.
    enc = registry.build("encoder", "sum", k=k, r=1, input_shape=(4, 4, 3))
    parity = np.asarray(enc.apply({}, x)[0])
    assert [_planes_of(parity[0, 0, 0, 0, c], k) for c in range(3)] == [
        [f"i{i}.{ch}" for i in range(k)] for ch in "RGB"]


@pytest.mark.parametrize("mode", ["per_channel", "upstream"])
def test_learned_encoder_modes_agree_on_one_channel(mode):
  """With C = 1 both channel modes are the same encoder."""
  enc = registry.build("encoder", "mlp", k=2, r=2, input_shape=(3, 3, 1), channel_mode=mode)
  other = registry.build("encoder", "mlp", k=2, r=2, input_shape=(3, 3, 1))
  shapes = jax.eval_shape(enc.init, jax.random.key(0, impl="unsafe_rbg"))
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), shapes)
  x = _x((4, 2, 3, 3, 1)).astype(jnp.float32)
  np.testing.assert_allclose(np.asarray(enc.apply(variables, x)[0]),
                             np.asarray(other.apply(variables, x)[0]), rtol=1e-6)


# (k, grid cell (row, col) of input i): upstream's layouts for k = 2, 4, ours beyond.
CONCAT_CELLS = {2: [(0, 0), (0, 1)], 3: [(0, 0), (0, 1), (0, 2)],
                4: [(0, 0), (0, 1), (1, 0), (1, 1)], 6: [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1),
                                                        (1, 2)]}


@pytest.mark.parametrize("k", sorted(CONCAT_CELLS))
def test_concat_layout_per_channel(k):
  h, w = 12, 12
  rows, cols = concat.grid(k)
  value = 10.0 * np.arange(k)[:, None] + np.arange(3)[None, :]  # image i channel c
  x = jnp.asarray(np.broadcast_to(value[None, :, None, None, :], (2, k, h, w, 3)), jnp.float32)
  enc = registry.build("encoder", "concat", k=k, r=1, input_shape=(h, w, 3))
  parity = np.asarray(enc.apply({}, x)[0])
  assert parity.shape == (2, 1, h, w, 3)
  ch, cw = h // rows, w // cols
  for i, (row, col) in enumerate(CONCAT_CELLS[k]):
    cell = parity[:, 0, row * ch:(row + 1) * ch, col * cw:(col + 1) * cw]
    np.testing.assert_allclose(cell, np.broadcast_to(value[i], cell.shape), atol=1e-5)


def test_concat_upstream_mode_k2_rgb():
  """docs/upstream.md §Channel grouping: with k = 2 on RGB, parity channel 0 = [i0.R | i0.G],
  etc."""
  value = {"i0.R": 1.0, "i0.G": 2.0, "i0.B": 3.0, "i1.R": 4.0, "i1.G": 5.0, "i1.B": 6.0}
  x = np.zeros((1, 2, 4, 4, 3), np.float32)
  for name, v in value.items():
    x[0, int(name[1]), :, :, "RGB".index(name[-1])] = v
  enc = registry.build("encoder", "concat", k=2, r=1, input_shape=(4, 4, 3),
                       channel_mode="upstream")
  parity = np.asarray(enc.apply({}, jnp.asarray(x))[0])[0, 0]
  for c, (left, right) in enumerate(UPSTREAM_ROWS[2]):
    np.testing.assert_allclose(parity[:, :2, c], value[left], atol=1e-6)
    np.testing.assert_allclose(parity[:, 2:, c], value[right], atol=1e-6)


def test_concat_vector_input_is_viewed_as_square():
  x = jnp.asarray(np.stack([np.full(16, 1.0), np.full(16, 2.0)])[None], jnp.float32)
  enc = registry.build("encoder", "concat", k=2, r=1, input_shape=(16,))
  parity = np.asarray(enc.apply({}, x)[0]).reshape(4, 4)
  np.testing.assert_allclose(parity, [[1, 1, 2, 2]] * 4, atol=1e-6)


@pytest.mark.parametrize("name,kw", [("berrut", {}), ("letcc", {"lam": 1e-3})])
def test_parity_target_is_linear_f_on_the_parity(name, kw):
  """For a linear F, parity_target(F(X)) = F(encoder(X)): the two factories agree."""
  with jax.enable_x64(True):
    k, r, shape = 3, 2, (5,)
    enc_kw = {"lam": kw["lam"]} if kw else {}
    dec_kw = {"lam_e": kw["lam"]} if kw else {}
    enc = registry.build("encoder", name, k=k, r=r, input_shape=shape, **enc_kw)
    dec = registry.build("decoder", name, k=k, r=r, num_classes=4, **dec_kw)
    _, y, pout = run_code(enc, dec, _x((2, k) + shape), erasure.patterns(k, r))
    np.testing.assert_allclose(pout, np.asarray(dec.parity_target(jnp.asarray(y))), atol=1e-10)
