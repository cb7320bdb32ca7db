"""Experiment configs, sweeps and config strings (configs/*.py, lcc_jax/sweep.py)."""
from __future__ import annotations

import collections
import functools
import inspect
import os
import textwrap

import ml_collections
from ml_collections import config_flags
import pytest

import helpers
from configs import default, fashion_mnist_mlp, learned_cc, parity_models, r_gt_1, tiny
from lcc_jax import losses, registry, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = {"learned_cc": learned_cc, "parity_models": parity_models, "r_gt_1": r_gt_1}
SINGLE = {"default": default, "tiny": tiny, "fashion_mnist_mlp": fashion_mnist_mlp}
# (per-example input shape, classes) of each dataset, from the datasets themselves.
SHAPES = {"digits": ((8, 8, 1), 10), "mnist": ((28, 28, 1), 10),
          "fashion_mnist": ((28, 28, 1), 10), "cifar10": ((32, 32, 3), 10),
          "cifar100": ((32, 32, 3), 100)}


def _fields(c: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
  """Dotted field names; `kwargs` dicts are one field (their keys are per component)."""
  out = set()
  for key, value in c.items():
    name = prefix + key
    if isinstance(value, ml_collections.ConfigDict) and key != "kwargs":
      out |= _fields(value, name + ".")
    else:
      out.add(name)
  return out


BASE_FIELDS = _fields(default.base())


@functools.lru_cache(maxsize=None)
def _sweep_configs(family: str, arg: str | None = None):
  module = FAMILIES[family]
  return [(e["name"], module.get_config(e["arg"])) for e in module.get_sweep(arg)]


def _all_configs():
  configs = [c for family in FAMILIES for _, c in _sweep_configs(family)]
  return configs + [m.get_config() for m in SINGLE.values()]


# --- every config builds with the full field set ------------------------------------------------

@pytest.mark.parametrize("module, arg", [
    (default, None), (tiny, None), (tiny, "k=3,r=2"),
    (tiny, "encoder=sum,decoder=sub,parity_model=same,loss=parity_mse"),
    (tiny, "encoder=conv,loss=xent,epochs=1"), (fashion_mnist_mlp, None),
    (fashion_mnist_mlp, "encoder=conv"), (learned_cc, None),
    (learned_cc, "dataset=cifar10,model=resnet18,k=5,loss=xent,encoder=conv"),
    (parity_models, None), (parity_models, "dataset=cifar100,model=resnet152,k=4,code=concat"),
    (parity_models, "dataset=mnist,code=learned-mlp,k=3"), (r_gt_1, None),
    (r_gt_1, "dataset=cifar10,model=resnet18,k=4,r=3,code=conv"),
])
def test_get_config_has_every_field(module, arg):
  c = module.get_config(arg)
  assert isinstance(c, ml_collections.ConfigDict)
  assert _fields(c) == BASE_FIELDS


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_sweep_entry_builds_with_every_field(family):
  entries = _sweep_configs(family)
  names = [name for name, _ in entries]
  sweep.check_names(names)
  assert all(name.count("/") >= 3 for name in names)
  for _, c in entries:
    assert _fields(c) == BASE_FIELDS


def test_tiny_is_small_and_trains_the_named_parts():
  c = tiny.get_config()
  assert (c.data.name, c.k, c.r, c.data.batch_size, c.num_epochs) == ("digits", 2, 1, 16, 2)
  assert tuple(c.base_model.kwargs.hidden) == (32,)
  assert (c.base_model.epochs, c.data.val_size) == (2, 100)
  pm = tiny.get_config("encoder=sum,decoder=sub,parity_model=same,loss=parity_mse")
  assert (pm.train.encoder, pm.train.decoder, pm.train.parity_model) == (False, False, True)
  with pytest.raises(ValueError, match="nothing to train"):
    tiny.get_config("encoder=sum,decoder=sub")


def test_fashion_mnist_mlp_is_the_learned_cc_entry():
  for encoder in ("mlp", "conv"):
    expected = learned_cc.get_config(
        f"dataset=fashion_mnist,model=base-mlp,k=2,loss=kl,encoder={encoder}")
    assert fashion_mnist_mlp.get_config(f"encoder={encoder}").to_dict() == expected.to_dict()
  c = fashion_mnist_mlp.get_config()
  assert (c.data.name, c.base_model.name, c.k, c.r, c.loss, c.encoder.name) == (
      "fashion_mnist", "base-mlp", 2, 1, "kl", "mlp")
  assert fashion_mnist_mlp.get_config("epochs=7").num_epochs == 7


# --- names resolve in the registry; components build with the family's shapes ------------------

NAME_FIELDS = {"base_model": lambda c: c.base_model.name, "encoder": lambda c: c.encoder.name,
               "decoder": lambda c: c.decoder.name, "loss": lambda c: c.loss,
               "dataset": lambda c: c.data.name}


@pytest.mark.parametrize("kind", sorted(NAME_FIELDS))
def test_every_name_is_registered(kind):
  names = {NAME_FIELDS[kind](c) for c in _all_configs()}
  if kind == "base_model":
    names |= {c.parity_model.name for c in _all_configs()} - {"", "same"}
  for name in sorted(names):
    if kind == "loss" and name == "parity_mse":
      assert callable(losses.parity_mse)  # not a registry loss: it scores F_P, not D
      continue
    assert registry.get(kind, name) is not None, (kind, name)


def _accepting(factory, kwargs):
  params = inspect.signature(factory).parameters
  return {k: v for k, v in kwargs.items() if k in params}


def test_every_component_builds_with_the_config_kwargs():
  seen = set()
  for c in _all_configs():
    shape, classes = SHAPES[c.data.name]
    common = dict(k=c.k, r=c.r)
    specs = [
        ("base_model", c.base_model.name, dict(input_shape=shape, num_classes=classes)),
        ("encoder", c.encoder.name, dict(common, input_shape=shape, num_classes=classes,
                                         channel_mode=c.channel_mode)),
        ("decoder", c.decoder.name, dict(common, num_classes=classes)),
    ]
    for kind, name, kw in specs:
      extra = dict((c.base_model if kind == "base_model" else c[kind]).kwargs)
      key = (kind, name, repr(sorted(kw.items())), repr(sorted(extra.items())))
      if key in seen:
        continue
      seen.add(key)
      factory = registry.get(kind, name)
      optional = _accepting(factory, {"upstream_init": c.upstream_init})
      fns = factory(**kw, **extra, **optional)
      assert callable(fns.init) and callable(fns.apply)
      if kind == "decoder" and not c.train.decoder:
        assert fns.parity_target is not None, (name, c.k, c.r)  # parity models need a target
  assert len(seen) > 40


# --- upstream's families: sizes and values (docs/upstream.md §Config formats) ---------------------

def test_learned_cc_has_upstreams_64_runs():
  entries = _sweep_configs("learned_cc")
  assert len(entries) == 64 == 12 + 12 + 4 + 12 + 12 + 12
  per_pair = collections.Counter((c.data.name, c.base_model.name) for _, c in entries)
  assert per_pair == {("mnist", "base-mlp"): 12, ("mnist", "resnet18"): 12,
                      ("mnist", "logistic"): 4, ("fashion_mnist", "base-mlp"): 12,
                      ("fashion_mnist", "resnet18"): 12, ("cifar10", "resnet18"): 12}
  for name, c in entries:
    dataset, model, k, loss, encoder = name.split("/")
    assert (c.data.name, c.base_model.name, f"k{c.k}", c.loss, c.encoder.name) == (
        dataset, model, k, loss, encoder)
    assert c.k in (2, 5) and c.r == 1 and c.loss in ("kl", "mse", "xent")
    assert c.encoder.name in ("mlp", "conv") and c.decoder.name == "mlp"
    assert c.data.batch_size == {2: 64, 5: 32}[c.k]
    assert c.num_epochs == {"mnist": 500, "fashion_mnist": 500, "cifar10": 2000}[c.data.name]
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("adam", 1e-3, 1e-5)
    assert (c.train.encoder, c.train.decoder, c.train.parity_model) == (True, True, False)
    assert c.parity_model.name == "" and c.upstream_init
    assert c.data.augment == (c.data.name == "cifar10")
    if c.base_model.name == "resnet18":
      assert c.base_model.kwargs.variant == ("cifar" if c.data.name == "cifar10" else "mnist")
    if c.encoder.name == "conv":
      assert c.encoder.kwargs.intermediate_channels_multiplier == 20
  assert {c.loss for _, c in entries if c.base_model.name == "logistic"} == {"kl"}


# docs/upstream.md §Config formats: file → (dataset, models, k values, epochs, encoder, decoder).
PARITY_MODELS_FILES = {
    "mnist-add": ("mnist", {"base-mlp", "resnet18"}, {2, 3, 4}, 500, "sum", "sub"),
    "mnist-concat": ("mnist", {"base-mlp", "resnet18"}, {2, 4}, 500, "concat", "sub"),
    "fashion_mnist-add": ("fashion_mnist", {"base-mlp", "resnet18"}, {2, 3, 4}, 500, "sum", "sub"),
    "fashion_mnist-concat": ("fashion_mnist", {"base-mlp", "resnet18"}, {2, 4}, 500, "concat",
                             "sub"),
    "cifar10-add": ("cifar10", {"resnet18"}, {2, 3, 4}, 1000, "sum", "sub"),
    "cifar10-concat": ("cifar10", {"resnet18"}, {2, 4}, 1000, "concat", "sub"),
    "cifar100-add": ("cifar100", {"resnet152"}, {2, 3, 4}, 1000, "sum", "sub"),
    "cifar100-concat": ("cifar100", {"resnet152"}, {2, 4}, 1000, "concat", "sub"),
    "mnist-learned": ("mnist", {"base-mlp"}, {2, 3, 4}, 500, "mlp", "mlp"),
    "cifar10-learned": ("cifar10", {"resnet18"}, {2, 3, 4}, 500, "conv", "mlp"),
}
EXPECTED_RUNS = {"mnist-add": 6, "mnist-concat": 4, "fashion_mnist-add": 6,
                 "fashion_mnist-concat": 4, "cifar10-add": 3, "cifar10-concat": 2,
                 "cifar100-add": 3, "cifar100-concat": 2, "mnist-learned": 3,
                 "cifar10-learned": 3}


@pytest.mark.parametrize("upstream_file", sorted(PARITY_MODELS_FILES))
def test_parity_models_family(upstream_file):
  dataset, models, k_values, epochs, encoder, decoder = PARITY_MODELS_FILES[upstream_file]
  code = {"sum": "add", "concat": "concat", "mlp": "learned-mlp", "conv": "learned-conv"}[encoder]
  entries = _sweep_configs("parity_models", f"dataset={dataset},code={code}")
  assert len(entries) == EXPECTED_RUNS[upstream_file] == len(models) * len(k_values)
  assert {(c.base_model.name, c.k) for _, c in entries} == {
      (m, k) for m in models for k in k_values}
  learned = code.startswith("learned")
  for _, c in entries:
    assert (c.data.name, c.num_epochs, c.r) == (dataset, epochs, 1)
    assert (c.encoder.name, c.decoder.name) == (encoder, decoder)
    assert c.data.batch_size == (64 if c.k == 2 else 32)
    assert c.loss == ("mse" if learned else "parity_mse")
    assert (c.train.encoder, c.train.decoder, c.train.parity_model) == (
        learned, learned, not learned)
    # learned: F itself on the parities (upstream's random frozen copy is a bug).
    assert c.parity_model.name == ("" if learned else "same")
    assert not c.upstream_init  # parity-models skipped init_weights for its coders
    assert c.data.augment == dataset.startswith("cifar")


def test_parity_models_total_excludes_cat_v_dog_and_gcommands():
  entries = _sweep_configs("parity_models")
  assert len(entries) == sum(EXPECTED_RUNS.values()) == 36
  assert {c.data.name for _, c in entries} == {"mnist", "fashion_mnist", "cifar10", "cifar100"}


def test_r_gt_1_family():
  entries = _sweep_configs("r_gt_1")
  assert len(entries) == 3 * 3 * 2 + 3 * 3
  by_code = collections.Counter((c.encoder.name, c.r) for _, c in entries)
  assert by_code == {("mds", 2): 9, ("mds", 3): 9, ("mlp", 2): 9}
  for _, c in entries:
    assert c.r > 1 and c.patterns.mode == "exactly"
    assert c.data.batch_size == (64 if c.k == 2 else 32)
    if c.encoder.name == "mds":
      assert (c.decoder.name, c.loss, c.parity_model.name) == ("mds", "parity_mse", "same")
      assert (c.train.encoder, c.train.decoder, c.train.parity_model) == (False, False, True)
    else:
      assert (c.decoder.name, c.loss, c.parity_model.name) == ("mlp", "kl", "")
      assert (c.train.encoder, c.train.decoder, c.train.parity_model) == (True, True, False)


def test_families_reject_uncovered_values():
  with pytest.raises(ValueError, match="dataset='svhn'.*choose one of"):
    learned_cc.get_config("dataset=svhn")
  with pytest.raises(ValueError, match="code='xor'"):
    parity_models.get_config("code=xor")
  with pytest.raises(ValueError, match="unknown key 'lr'.*known keys"):
    r_gt_1.get_config("lr=0.1")


# --- sweep selection, config strings, load_entries ---------------------------------------------

def test_sweep_selection_and_passthrough():
  mnist = learned_cc.get_sweep("dataset=mnist")
  assert len(mnist) == 28
  logistic = learned_cc.get_sweep("model=logistic,epochs=3")
  assert [e["name"] for e in logistic] == ["mnist/logistic/k2/kl/mlp", "mnist/logistic/k2/kl/conv",
                                          "mnist/logistic/k5/kl/mlp", "mnist/logistic/k5/kl/conv"]
  assert all(learned_cc.get_config(e["arg"]).num_epochs == 3 for e in logistic)
  one = learned_cc.get_sweep("dataset=cifar10,model=resnet18,k=5,loss=xent,encoder=conv")
  assert [e["name"] for e in one] == ["cifar10/resnet18/k5/xent/conv"]
  with pytest.raises(ValueError, match="no sweep entry"):
    learned_cc.get_sweep("model=logistic,loss=mse")
  # Every swept key given: one run, even one the sweep does not list.
  off = r_gt_1.get_sweep("dataset=cifar10,model=resnet18,k=4,r=2,code=conv,epochs=9")
  assert [e["name"] for e in off] == ["cifar10/resnet18/k4/r2/conv"]
  c = r_gt_1.get_config(off[0]["arg"])
  assert (c.encoder.name, c.decoder.name, c.r, c.num_epochs) == ("conv", "mlp", 2, 9)


def test_parse_arg_types_and_errors():
  a = sweep.parse_arg("k=5, lr=1e-4,name=x,flag", k=2, lr=1.0, name="", flag=False, on=True)
  assert (a.k, a.lr, a.name, a.flag, a.on) == (5, 1e-4, "x", True, True)
  assert isinstance(a.lr, float) and isinstance(a.k, int)
  assert sweep.parse_arg(None, k=2).k == 2
  assert sweep.parse_arg("on=false", on=True).on is False
  assert sweep.parse_arg("name=", name="a").name == ""
  for arg, match in [("j=1", r"unknown key 'j'.*\['k', 'name'\]"), ("k=2.5", "not a valid int"),
                     ("k=1,k=2", "given twice"), ("k", "needs a value")]:
    with pytest.raises(ValueError, match=match):
      sweep.parse_arg(arg, k=2, name="")
  with pytest.raises(ValueError, match="not a bool"):
    sweep.parse_arg("on=maybe", on=True)


def test_format_arg_round_trips():
  values = dict(dataset="mnist", k=5, lr=0.5, flag=False)
  assert sweep.parse_arg(sweep.format_arg(**values), **values).to_dict() == values
  with pytest.raises(ValueError, match="cannot contain"):
    sweep.format_arg(path="a,b")


def _write(tmp_path, name, body):
  path = tmp_path / name
  path.write_text(textwrap.dedent(body))
  return str(path)


def test_load_entries_single_and_sweep(tmp_path):
  single = _write(tmp_path, "single.py", """
      import ml_collections
      def get_config(arg=None):
        return ml_collections.ConfigDict({"arg": arg or ""})
      """)
  assert [(n, c.arg) for n, c in sweep.load_entries(single, "x=1")] == [("", "x=1")]
  swept = _write(tmp_path, "swept.py", """
      import ml_collections
      def get_config(arg=None):
        return ml_collections.ConfigDict({"arg": arg or ""})
      def get_sweep(arg=None):
        return [{"name": f"a/k{k}", "arg": f"k={k}"} for k in (2, 3)]
      """)
  assert [(n, c.arg) for n, c in sweep.load_entries(swept)] == [("a/k2", "k=2"), ("a/k3", "k=3")]
  loaded = sweep.load_entries(os.path.join(ROOT, "configs", "learned_cc.py"), "dataset=cifar10")
  assert len(loaded) == 12 and all(c.data.name == "cifar10" for _, c in loaded)
  assert loaded[0][0] == "cifar10/resnet18/k2/kl/mlp"


@pytest.mark.parametrize("names, match", [
    (["a", "a"], "unique"), (["a/../b", "c"], "safe"), (["", "b"], "safe"),
    (["/abs", "b"], "safe"), (["a b", "c"], "safe"), (["./a", "b"], "safe")])
def test_load_entries_rejects_bad_names(tmp_path, names, match):
  path = _write(tmp_path, "bad.py", f"""
      def get_config(arg=None):
        return {{}}
      def get_sweep(arg=None):
        return [{{"name": n, "arg": ""}} for n in {names!r}]
      """)
  with pytest.raises(ValueError, match=match):
    sweep.load_entries(path)


def test_absl_config_flag_with_config_string_and_override():
  argv = ["prog", f"--config={ROOT}/configs/tiny.py:k=3,r=2", "--config.num_epochs=5",
          "--config.data.manual_dir=/data"]
  values = helpers.parse_config_flag(argv)
  assert (values.config.k, values.config.r, values.config.num_epochs) == (3, 2, 5)
  assert values.config.data.manual_dir == "/data"


def test_flag_overrides_apply_to_every_sweep_entry():
  # What train.py does for a sweep: the config flag's file and string, then its overrides.
  argv = ["prog", f"--config={ROOT}/configs/parity_models.py:dataset=cifar10,code=add",
          "--config.data.manual_dir=/data", "--config.num_epochs=2"]
  values = helpers.parse_config_flag(argv)
  path, _, arg = config_flags.get_config_filename(values["config"]).partition(":")
  overrides = config_flags.get_override_values(values["config"])
  entries = sweep.load_entries(path, arg)
  assert [name for name, _ in entries] == [f"cifar10/resnet18/k{k}/add" for k in (2, 3, 4)]
  for _, c in entries:
    c.update_from_flattened_dict(overrides)
    assert (c.data.manual_dir, c.num_epochs, c.data.name) == ("/data", 2, "cifar10")
