"""Pure, jitted train and evaluation steps.

The train state holds only what is trained: the ``params`` of the trainable components (any
subset of encoder, decoder, parity_model), their mutable state (the parity model's batch-norm
statistics) and the optimizer state built for exactly those params. Everything else, F above
all, is a separate ``frozen`` argument: gradients are taken w.r.t. ``state.params`` only, so F
has no gradient, no optimizer moments and cannot change (tests check it bit for bit).

Data lives on the device (``data = {"x": x_NxI, "y": y_NxC, "labels": labels_N}``); a step
receives one index array ``idx_BxK`` and gathers its groups itself. The training loop runs many
steps per dispatch (``train_chunk``: a ``lax.scan`` over an epoch's index arrays, uploaded once
per epoch) and a whole split's evaluation in one (``eval_split``), so the host neither sends
nor reads anything per step.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from lcc_jax import coding, losses, metrics, precision

COMPONENTS = ("encoder", "decoder", "parity_model")
PARITY_LOSS = "parity_mse"


@flax.struct.dataclass
class TrainState:
  step: jax.Array           # int32 scalar
  params: dict[str, Any]    # {component: params} for trainable components only
  model_state: dict[str, Any]  # {component: non-param collections} of trainable components
  opt_state: Any            # tx.init(params): optimizer state for the trainable leaves only
  rng: jax.Array            # base key; the step's key is fold_in(rng, step)


def split_variables(variables: dict[str, Any], trainable: Iterable[str]):
  """(params, model_state, frozen) from {component: variables}."""
  trainable = set(trainable)
  unknown = trainable - set(COMPONENTS)
  if unknown:
    raise ValueError(f"only {list(COMPONENTS)} can be trained, got {sorted(unknown)}")
  params = {n: variables[n]["params"] for n in sorted(trainable) if "params" in variables[n]}
  model_state = {n: {c: v for c, v in variables[n].items() if c != "params"}
                 for n in sorted(trainable)}
  frozen = {n: v for n, v in variables.items() if n not in params}
  return params, model_state, frozen


def init_state(variables, trainable, tx: optax.GradientTransformation, rng) -> tuple[TrainState,
                                                                                    dict]:
  params, model_state, frozen = split_variables(variables, trainable)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                     opt_state=tx.init(params), rng=rng)
  return state, frozen


def all_variables(params, model_state, frozen) -> dict[str, Any]:
  """{component: variables} seen by the forward pass."""
  variables = dict(frozen)
  for name, p in params.items():
    variables[name] = {**model_state.get(name, {}), "params": p}
  return variables


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def gather(data, idx_BxK):
  return (data["x"][idx_BxK], data["y"][idx_BxK], data["labels"][idx_BxK])


def batch_loss(code: coding.Code, variables, x_BxKxI, y_BxKxC, labels_BxK, weight_B,
               unavail_PxN, *, loss: str, train: bool, chunk=None, compute_dtype=None):
  """(loss, (recon_PxBxKxC, pout_BxRxC, parity-model state updates)) for one batch of groups.

  With ``compute_dtype`` (bfloat16) the forward pass computes in it; what comes out (and so the
  loss, the metrics and the state updates) is float32 again.
  """
  recon_PxBxKxC, pout_BxRxC, updates = coding.forward(
      code, precision.cast(variables, compute_dtype), precision.cast(x_BxKxI, compute_dtype),
      precision.cast(y_BxKxC, compute_dtype), unavail_PxN, train=train, chunk=chunk)
  recon_PxBxKxC, pout_BxRxC, updates = precision.cast((recon_PxBxKxC, pout_BxRxC, updates),
                                                      jnp.float32)
  if loss == PARITY_LOSS:
    target_BxRxC = code.decoder.parity_target(y_BxKxC)
    value = losses.parity_mse(pout_BxRxC, target_BxRxC, weight_B)
  else:
    value, _ = losses.reconstruction_loss(loss, recon_PxBxKxC, y_BxKxC, labels_BxK,
                                          unavail_PxN, weight_B)
  return value, (recon_PxBxKxC, pout_BxRxC, updates)


def train_step(state: TrainState, frozen, data, idx_BxK, weight_B, unavail_PxN, *,
               code: coding.Code, tx: optax.GradientTransformation, loss: str,
               augment: Callable | None = None, chunk=None, skip_nonfinite: bool = False,
               compute_dtype=None):
  """One optimisation step; returns (new state, metrics of this step).

  With ``skip_nonfinite`` a step whose loss or gradients are not finite leaves the state as it
  was (only the step counter moves) and reports ``skipped = 1``.
  """
  x_BxKxI, y_BxKxC, labels_BxK = gather(data, idx_BxK)
  if augment is not None:
    # Targets stay F(unaugmented x), as upstream (docs/upstream.md §Datasets and normalisation).
    x_BxKxI = augment(jax.random.fold_in(state.rng, state.step), x_BxKxI)
  frozen = jax.lax.stop_gradient(frozen)

  def objective(params):
    variables = all_variables(params, state.model_state, frozen)
    # Training mode matters only for a trained parity model's batch norm; a frozen F_P, like
    # F, always runs on its running statistics.
    return batch_loss(code, variables, x_BxKxI, y_BxKxC, labels_BxK, weight_B, unavail_PxN,
                      loss=loss, train="parity_model" in state.params, chunk=chunk,
                      compute_dtype=compute_dtype)

  (value, (recon_PxBxKxC, _, updates)), grads = jax.value_and_grad(objective, has_aux=True)(
      state.params)
  step_updates, opt_state = tx.update(grads, state.opt_state, state.params)
  model_state = {n: {**s, **updates} if n == "parity_model" else s
                 for n, s in state.model_state.items()}
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params,
                                                                           step_updates),
                            model_state=model_state, opt_state=opt_state)
  finite = jnp.isfinite(value) & _all_finite(grads) if skip_nonfinite else True
  if skip_nonfinite:
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state,
                             state.replace(step=state.step + 1))
  counts = metrics.pattern_counts(jax.lax.stop_gradient(recon_PxBxKxC), y_BxKxC, labels_BxK,
                                  unavail_PxN, weight_B)
  return new_state, {"loss": value, "skipped": 1 - jnp.asarray(finite, jnp.int32), **counts}


def train_chunk(state: TrainState, frozen, data, idx_SxBxK, weight_SxB, first_step, unavail_PxN,
                *, num_steps: int, **step_kwargs):
  """``num_steps`` train steps in one ``lax.scan``, from step ``state.step − first_step`` of
  the epoch.

  ``idx_SxBxK`` / ``weight_SxB`` are a whole epoch's batches and ``first_step`` the global step
  the epoch began at, all uploaded once per epoch: where a chunk starts follows from the state
  itself, so nothing crosses to the device per chunk. Returns (state, (loss_L, skipped_L),
  counts) with the counts (see ``metrics.pattern_counts``) summed over the chunk in int32.
  """
  start = state.step - first_step
  idx_LxBxK = jax.lax.dynamic_slice_in_dim(idx_SxBxK, start, num_steps)
  weight_LxB = jax.lax.dynamic_slice_in_dim(weight_SxB, start, num_steps)

  def one_step(carry, batch):
    state, counts = carry
    state, step_metrics = train_step(state, frozen, data, *batch, unavail_PxN, **step_kwargs)
    loss, skipped = step_metrics.pop("loss"), step_metrics.pop("skipped")
    return (state, jax.tree.map(jnp.add, counts, step_metrics)), (loss, skipped)

  counts_shape = jax.eval_shape(
      lambda: train_step(state, frozen, data, idx_LxBxK[0], weight_LxB[0], unavail_PxN,
                         **step_kwargs))[1]
  zeros = {key: jnp.zeros(v.shape, v.dtype) for key, v in counts_shape.items()
           if key not in ("loss", "skipped")}
  (state, counts), per_step = jax.lax.scan(one_step, (state, zeros), (idx_LxBxK, weight_LxB))
  return state, per_step, counts


def eval_step(params, model_state, frozen, data, idx_BxK, weight_B, unavail_PxN, *,
              code: coding.Code, loss: str, chunk=None, compute_dtype=None):
  """Per-pattern counts (and loss sums) for one batch of fixed groups; nothing is trained.

  ``loss_sum`` is always the reconstruction loss of the reconstructions (MSE for a parity-model
  run); a parity-model run adds ``parity_loss_sum``, its training objective.
  """
  x_BxKxI, y_BxKxC, labels_BxK = gather(data, idx_BxK)
  variables = all_variables(params, model_state, frozen)
  value, (recon_PxBxKxC, _, _) = batch_loss(
      code, variables, x_BxKxI, y_BxKxC, labels_BxK, weight_B, unavail_PxN, loss=loss,
      train=False, chunk=chunk, compute_dtype=compute_dtype)
  recon_loss = "mse" if loss == PARITY_LOSS else loss  # any reconstruction loss, a user's too
  counts = metrics.pattern_counts(recon_PxBxKxC, y_BxKxC, labels_BxK, unavail_PxN, weight_B,
                                  loss_name=recon_loss)
  if loss == PARITY_LOSS:  # the objective batch_loss computed: the mean parity MSE
    counts["parity_loss_sum"] = value * jnp.sum(weight_B)
  counts.update({f"base_{key}": v for key, v in metrics.base_counts(y_BxKxC, labels_BxK,
                                                                     weight_B).items()})
  return counts


def eval_split(params, model_state, frozen, data, idx_SxBxK, weight_SxB, unavail_PxN,
               **step_kwargs):
  """``eval_step`` over every batch of a split in one ``lax.scan``: each batch's counts, stacked
  (S, ...), so the host sums them in int64 / float64 exactly as batch by batch."""

  def one_batch(_, batch):
    return None, eval_step(params, model_state, frozen, data, *batch, unavail_PxN, **step_kwargs)

  return jax.lax.scan(one_batch, None, (idx_SxBxK, weight_SxB))[1]


def _traced_in(precision_name: str, fn: Callable) -> Callable:
  """``fn`` traced under the precision's matmul setting (so it is part of the program)."""

  def wrapped(*args, **kwargs):
    with precision.scope(precision_name):
      return fn(*args, **kwargs)

  # Named as the step it runs (a partial has no name): compile logs and profiles say which.
  wrapped.__name__ = wrapped.__qualname__ = fn.func.__name__
  return wrapped


def jit_train_step(code, tx, loss, augment=None, chunk=None, skip_nonfinite=False,
                   precision_name="highest"):
  """The jitted train step; the state is donated (updated in place on the device)."""
  step = functools.partial(train_step, code=code, tx=tx, loss=loss, augment=augment, chunk=chunk,
                           skip_nonfinite=skip_nonfinite,
                           compute_dtype=precision.compute_dtype(precision_name))
  return jax.jit(_traced_in(precision_name, step), donate_argnums=0)


def jit_train_chunk(code, tx, loss, augment=None, chunk=None, skip_nonfinite=False,
                    precision_name="highest", frozen_axes=None):
  """The jitted ``train_chunk`` (``num_steps`` static: one program per chunk length).

  ``frozen_axes`` (replicated runs): the frozen variables' replica axes; the state and the
  epoch's index arrays then carry a leading replica axis and the chunk is vmapped over it.
  """
  fn = _traced_in(precision_name, functools.partial(
      train_chunk, code=code, tx=tx, loss=loss, augment=augment, chunk=chunk,
      skip_nonfinite=skip_nonfinite, compute_dtype=precision.compute_dtype(precision_name)))
  if frozen_axes is not None:
    fn = _over_replicas(fn, (0, frozen_axes, None, 0, 0, None, None))
  return jax.jit(fn, donate_argnums=0, static_argnames="num_steps")


def jit_eval_step(code, loss, chunk=None, precision_name="highest"):
  return jax.jit(_traced_in(precision_name, functools.partial(
      eval_step, code=code, loss=loss, chunk=chunk,
      compute_dtype=precision.compute_dtype(precision_name))))


def jit_eval_split(code, loss, chunk=None, precision_name="highest", frozen_axes=None):
  """The jitted ``eval_split``; with ``frozen_axes``, vmapped over replicas as the train chunk
  (the split's batches are shared)."""
  fn = _traced_in(precision_name, functools.partial(
      eval_split, code=code, loss=loss, chunk=chunk,
      compute_dtype=precision.compute_dtype(precision_name)))
  if frozen_axes is not None:
    fn = _over_replicas(fn, (0, 0, frozen_axes, None, None, None, None))
  return jax.jit(fn)


def _over_replicas(fn: Callable, in_axes) -> Callable:
  """``fn`` vmapped over a leading replica axis; keyword arguments (static) pass through."""

  def vmapped(*args, **kwargs):
    return jax.vmap(functools.partial(fn, **kwargs), in_axes=in_axes)(*args)

  vmapped.__name__ = vmapped.__qualname__ = f"{fn.__name__}_replicas"
  return vmapped
