"""Upstream PyTorch state dicts → our base models: same logits as the PyTorch models.

The parity tests need the optional torch package and are skipped without it; the key
handling (prefixes, wrappers, error lists) is also tested on numpy state dicts.
"""
from __future__ import annotations

import sys

import jax
import numpy as np
import pytest

from lcc_jax import nn, registry
from lcc_jax.models.torch_import import load_torch_state_dict


@pytest.fixture(autouse=True, scope="module")
def _fast_compile():
  """Few XLA passes: compiling the models dominates these tests on CPU."""
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(name="torch")
def _torch():
  torch = pytest.importorskip(
      "torch", reason="optional torch not installed (pip install torch==2.13.0) - PyTorch "
      "parity tests skipped")
  torch.manual_seed(0)
  return torch


def _logits(name, input_shape, num_classes, variables, x, **model_kwargs):
  fns = registry.build("base_model", name, input_shape=input_shape, num_classes=num_classes,
                       **model_kwargs)
  return np.asarray(jax.jit(fns.apply)(variables, x)[0])


def _mlp_state(rng, sizes):
  """A PyTorch-layout numpy state dict of ``nn.Sequential(Linear, ReLU, ...)``."""
  state = {}
  for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    state[f"nn.{2 * i}.weight"] = rng.normal(size=(fan_out, fan_in)).astype(np.float32) * 0.1
    state[f"nn.{2 * i}.bias"] = rng.normal(size=fan_out).astype(np.float32)
  return state


def test_missing_torch_names_the_install_command(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
  with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
    load_torch_state_dict(tmp_path / "base-mlp.t7", "base-mlp", (28, 28, 1), 10)


def test_numpy_state_dict_with_prefix_and_wrapper():
  rng = np.random.default_rng(0)
  state = _mlp_state(rng, (784, 200, 100, 10))
  wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
  variables = load_torch_state_dict(wrapped, "base-mlp", (28, 28, 1), 10)
  assert nn.count_params(variables) == 178_110
  x = rng.normal(size=(4, 28, 28, 1)).astype(np.float32)
  h = x.reshape(4, -1)
  for i in range(3):
    h = h @ state[f"nn.{2 * i}.weight"].T + state[f"nn.{2 * i}.bias"]
    h = np.maximum(h, 0) if i < 2 else h
  np.testing.assert_allclose(_logits("base-mlp", (28, 28, 1), 10, variables, x), h,
                             rtol=1e-4, atol=1e-4)


def test_errors_list_missing_unmatched_and_misshapen_keys():
  rng = np.random.default_rng(1)
  state = _mlp_state(rng, (784, 200, 100, 10))
  del state["nn.4.bias"]
  state["extra.running_mean"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match=r"missing \['Dense.2.bias'\].*unmatched "
                     r"\['extra.running_mean'\]"):
    load_torch_state_dict(state, "base-mlp", (28, 28, 1), 10)
  state = {"conv1.weight": np.zeros((20, 1, 3, 3), np.float32)}
  with pytest.raises(ValueError, match=r"missing \[.*'fc2.bias'.*wrong shapes \['conv1.weight: "
                     r"\(20, 1, 3, 3\).*model needs \(5, 5, 1, 20\)"):
    load_torch_state_dict(state, "lenet5", (28, 28, 1), 10)
  with pytest.raises(ValueError, match="no state dict found"):
    load_torch_state_dict({"acc": 0.9}, "logistic", (28, 28, 1), 10)


# --- parity with PyTorch models (written here after upstream's code, docs/upstream.md §Base models)


def _randomise_batch_norm(torch, model):
  """Random BN affine and running statistics, so that every imported tensor matters."""
  for module in model.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      with torch.no_grad():
        module.weight.normal_()
        module.bias.normal_()
        module.running_mean.normal_()
        module.running_var.uniform_(0.5, 2.0)


def _torch_logits(torch, model, x_nhwc):
  with torch.no_grad():
    return model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).numpy()


@pytest.mark.parametrize("legacy", [True, False])
def test_base_mlp_file_gives_torch_logits(torch, tmp_path, legacy):
  tnn = torch.nn
  model = tnn.Sequential(tnn.Linear(784, 200), tnn.ReLU(), tnn.Linear(200, 100), tnn.ReLU(),
                         tnn.Linear(100, 10))
  path = tmp_path / ("base-mlp.t7" if legacy else "base-mlp.pth")
  torch.save(model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
  variables = load_torch_state_dict(str(path), "base-mlp", (28, 28, 1), 10)
  x = np.random.default_rng(2).normal(size=(5, 28, 28, 1)).astype(np.float32)
  expected = model(torch.from_numpy(x).reshape(5, -1)).detach().numpy()  # upstream view(-1, 784)
  np.testing.assert_allclose(_logits("base-mlp", (28, 28, 1), 10, variables, x), expected,
                             atol=1e-4)


def test_mlp_on_rgb_flattens_like_torch(torch):
  model = torch.nn.Linear(4 * 4 * 3, 6)
  variables = load_torch_state_dict(model.state_dict(), "logistic", (4, 4, 3), 6)
  x = np.random.default_rng(3).normal(size=(2, 4, 4, 3)).astype(np.float32)
  expected = _torch_logits(torch, torch.nn.Sequential(torch.nn.Flatten(), model), x)
  np.testing.assert_allclose(_logits("logistic", (4, 4, 3), 6, variables, x), expected,
                             atol=1e-4)


def _torch_resnet_mnist(torch):
  """Upstream's ResNet18(size_for_cifar=False): 3 BasicBlock stages, AvgPool2d(7), fc 256."""
  tnn = torch.nn

  class Block(tnn.Module):

    def __init__(self, inplanes, planes, stride):
      super().__init__()
      self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
      self.bn1 = tnn.BatchNorm2d(planes)
      self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
      self.bn2 = tnn.BatchNorm2d(planes)
      self.downsample = None
      if stride != 1 or inplanes != planes:
        self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                         tnn.BatchNorm2d(planes))

    def forward(self, x):
      out = torch.relu(self.bn1(self.conv1(x)))
      out = self.bn2(self.conv2(out))
      return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

  class ResNet(tnn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = tnn.Conv2d(1, 64, 3, 1, 1, bias=False)
      self.bn1 = tnn.BatchNorm2d(64)
      self.layer1 = tnn.Sequential(Block(64, 64, 1), Block(64, 64, 1))
      self.layer2 = tnn.Sequential(Block(64, 128, 2), Block(128, 128, 1))
      self.layer3 = tnn.Sequential(Block(128, 256, 2), Block(256, 256, 1))
      self.avgpool = tnn.AvgPool2d(7)
      self.fc = tnn.Linear(256, 10)

    def forward(self, x):
      x = torch.relu(self.bn1(self.conv1(x)))
      x = self.avgpool(self.layer3(self.layer2(self.layer1(x))))
      return self.fc(x.view(x.size(0), -1))

  return ResNet()


def test_resnet18_mnist_with_kuangliu_names_gives_torch_logits(torch, tmp_path):
  model = _torch_resnet_mnist(torch).eval()
  _randomise_batch_norm(torch, model)
  assert sum(p.numel() for p in model.parameters()) == 2_776_522
  state = {}  # as kuangliu/pytorch-cifar + DataParallel would have saved it
  for key, value in model.state_dict().items():
    key = key.replace("fc.", "linear.").replace(".downsample.", ".shortcut.")
    state[f"module.{key}"] = value
  path = tmp_path / "resnet18.pth"
  torch.save({"net": state, "acc": 99.1, "epoch": 7}, path)
  variables = load_torch_state_dict(path, "resnet18", (28, 28, 1), 10)
  x = np.random.default_rng(4).normal(size=(3, 28, 28, 1)).astype(np.float32)
  np.testing.assert_allclose(_logits("resnet18", (28, 28, 1), 10, variables, x),
                             _torch_logits(torch, model, x), atol=1e-4)


def test_lenet5_gives_torch_logits(torch):
  tnn = torch.nn
  conv1, conv2 = tnn.Conv2d(1, 20, 5), tnn.Conv2d(20, 20, 5)
  model = tnn.Sequential(conv1, tnn.MaxPool2d(2), tnn.ReLU(), conv2, tnn.MaxPool2d(2),
                         tnn.ReLU(), tnn.Flatten(), tnn.Linear(320, 1000), tnn.ReLU(),
                         tnn.Linear(1000, 10))
  names = {"0": "conv1", "3": "conv2", "7": "fc1", "9": "fc2"}
  state = {f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v
           for k, v in model.state_dict().items()}
  variables = load_torch_state_dict(state, "lenet5", (28, 28, 1), 10)
  x = np.random.default_rng(5).normal(size=(3, 28, 28, 1)).astype(np.float32)
  np.testing.assert_allclose(_logits("lenet5", (28, 28, 1), 10, variables, x),
                             _torch_logits(torch, model, x), atol=1e-4)


def _torch_vgg11(torch, fc1_in, num_classes):
  """Upstream's VGG11: ``features`` Sequential (conv, BN, ReLU / max-pool), fc1, fc2."""
  tnn = torch.nn
  layers, channels = [], 1
  for width in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
    if width == "M":
      layers.append(tnn.MaxPool2d(2, 2))
    else:
      layers += [tnn.Conv2d(channels, width, 3, padding=1), tnn.BatchNorm2d(width), tnn.ReLU()]
      channels = width
  layers.append(tnn.AvgPool2d(1, 1))

  class VGG(tnn.Module):

    def __init__(self):
      super().__init__()
      self.features = tnn.Sequential(*layers)
      self.fc1 = tnn.Linear(fc1_in, 512)
      self.fc2 = tnn.Linear(512, num_classes)

    def forward(self, x):
      out = self.features(x)
      return self.fc2(self.fc1(torch.flatten(out, 1)))  # upstream: view(N, -1) of NCHW

  return VGG()


def test_vgg11_gives_torch_logits_and_training_statistics(torch):
  model = _torch_vgg11(torch, 512 * 2 * 1, 5)  # a 64×32 image ends as a 2×1×512 map
  _randomise_batch_norm(torch, model)
  variables = load_torch_state_dict(model.state_dict(), "vgg11", (64, 32, 1), 5)
  fns = registry.build("base_model", "vgg11", input_shape=(64, 32, 1), num_classes=5)
  apply = jax.jit(fns.apply, static_argnames="train")
  x = np.random.default_rng(6).normal(size=(4, 64, 32, 1)).astype(np.float32)
  np.testing.assert_allclose(apply(variables, x)[0], _torch_logits(torch, model.eval(), x),
                             atol=1e-4)
  # Training mode: batch statistics, and PyTorch's running-statistics update (unbiased var).
  logits, updates = apply(variables, x, train=True)
  np.testing.assert_allclose(logits, _torch_logits(torch, model.train(), x), atol=1e-4)
  moved = load_torch_state_dict(model.state_dict(), "vgg11", (64, 32, 1), 5)["batch_stats"]
  for layer, stats in moved.items():
    for stat in ("mean", "var"):
      np.testing.assert_allclose(updates["batch_stats"][layer][stat], stats[stat],
                                 rtol=1e-4, atol=1e-5, err_msg=f"{layer}/{stat}")
