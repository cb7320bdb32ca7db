"""How F_P starts (parity_model.init): a copy of F where it has F's architecture, else from
scratch; the upstream families keep both originals' from-scratch F_P; a joint run from F starts
as the learned code with F on the parity and learns where one from scratch sits at chance."""
from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from configs import default, learned_cc, parity_models, r_gt_1, tiny
from lcc_jax import assembly, coding, erasure, replicas, train_lib, validate
from lcc_jax.config_errors import ConfigError


def _joint(init: str, **fields):
  config = tiny.get_config("parity_model=same")
  config.parity_model.init = init
  for key, value in fields.items():
    setattr(config, key, value)
  return config


def test_auto_is_base_only_where_f_p_has_fs_architecture():
  config = default.get_config()
  assert config.parity_model.init == "auto"
  config.parity_model.name = "same"
  assert assembly.parity_init(config) == "base"
  config.parity_model.name = config.base_model.name  # same factory, other kwargs
  assert assembly.parity_init(config) == "scratch"
  config.parity_model.kwargs = config.base_model.kwargs.to_dict()
  assert assembly.parity_init(config) == "base"
  config.parity_model.name = "logistic"
  assert assembly.parity_init(config) == "scratch"
  config.parity_model.name, config.parity_model.init = "same", "scratch"
  assert assembly.parity_init(config) == "scratch"


def test_upstream_families_train_f_p_from_scratch():
  """Both originals start F_P from init_weights; lcc_jax's own r > 1 family starts it from F."""
  assert parity_models.get_config("dataset=mnist,model=base-mlp,k=2,code=add").parity_model.init \
      == "scratch"
  assert learned_cc.get_config("").parity_model.init == "scratch"
  mds = r_gt_1.get_config("dataset=mnist,k=2,r=2,code=mds")
  assert mds.parity_model.init == "auto" and assembly.parity_init(mds) == "base"
  assert not r_gt_1.get_config("dataset=mnist,k=2,r=2,code=mlp").upstream_init


@pytest.mark.parametrize("init,name,message", [
    ("warm", "same", "parity_model.init='warm'; use one of ['auto', 'scratch', 'base']"),
    ("base", "logistic", "parity_model.init=base copies F into F_P, which needs a parity model "
     "with F's architecture"),
])
def test_bad_parity_init_is_one_line(init, name, message):
  config = _joint(init)
  config.parity_model.name = name
  with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
    validate.check_config(config)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """The tiny joint run prepared once (its F trained once)."""
  return assembly.prepare(_joint("base"), str(tmp_path_factory.mktemp("joint")))


def test_base_copies_f_and_scratch_does_not(prepared):
  base_run = prepared
  variables, _, _ = assembly.init_state(base_run, assembly.make_tx(base_run.config))
  for f_leaf, fp_leaf in zip(jax.tree.leaves(base_run.base_variables),
                             jax.tree.leaves(variables["parity_model"])):
    np.testing.assert_array_equal(np.asarray(fp_leaf), np.asarray(f_leaf))
  scratch = base_run.config.copy_and_resolve_references()
  scratch.parity_model.init = "scratch"
  fresh, _, _ = assembly.init_state(dataclasses.replace(base_run, config=scratch),
                                    assembly.make_tx(scratch))
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(base_run.base_variables),
                                                      jax.tree.leaves(fresh["parity_model"])))


def test_every_replica_starts_f_p_as_f(prepared):
  config = prepared.config.copy_and_resolve_references()
  config.replicas.seeds = 3
  run = dataclasses.replace(prepared, config=config)
  _, state, _ = replicas.init_state(run, assembly.make_tx(config), replicas.from_config(config))
  for f_leaf, fp_leaf_R in zip(jax.tree.leaves(run.base_variables),
                               jax.tree.leaves(state.params["parity_model"])):
    np.testing.assert_array_equal(np.asarray(fp_leaf_R), np.broadcast_to(f_leaf,
                                                                         fp_leaf_R.shape))


def test_joint_from_f_starts_as_the_learned_code(prepared):
  """F_P = F at step 0: the joint code's reconstructions are the learned code's (F on parity)."""
  run = prepared
  variables, _, _ = assembly.init_state(run, assembly.make_tx(run.config))
  learned = run.code._replace(parity_model=None)
  x_BxKxI = run.dataset.x_test[:8 * run.k].reshape((8, run.k) + run.dataset.input_shape)
  y_BxKxC = run.y_test[:8 * run.k].reshape(8, run.k, -1)
  unavail_PxN = erasure.patterns(run.k, run.r, "exactly")
  joint_recon, _, _ = coding.forward(run.code, variables, x_BxKxI, y_BxKxC, unavail_PxN)
  alone_recon, _, _ = coding.forward(learned, {k: v for k, v in variables.items()
                                               if k != "parity_model"},
                                     x_BxKxI, y_BxKxC, unavail_PxN)
  np.testing.assert_allclose(np.asarray(joint_recon), np.asarray(alone_recon), rtol=1e-6,
                             atol=1e-6)


def _test_degraded(workdir, parity_init):
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["parity_model_init"] == parity_init
  return summary["test"]["degraded_top1"]


def test_joint_from_f_learns_where_joint_from_scratch_sits_at_chance(tmp_path):
  """Upstream's N(0, 0.01) everywhere (encoder, F_P, decoder): a saddle at the prior; the same
  joint run with F_P starting as F and PyTorch-default coders learns (docs/training.md)."""
  scores = {}
  for name, init, upstream_init in (("scratch", "scratch", True), ("from_f", "base", False)):
    config = _joint(init, upstream_init=upstream_init, num_epochs=15)
    config.base_model.epochs = 20  # F: 85 % test accuracy
    train_lib.train_and_evaluate(config, str(tmp_path / name), progress=False)
    scores[name] = _test_degraded(str(tmp_path / name), init)
  assert scores["scratch"] < 0.2, scores  # 10 classes: chance is 0.1 (this machine: 0.12)
  assert scores["from_f"] > 0.5, scores  # this machine: 0.70
