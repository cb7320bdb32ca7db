"""A faithful PyTorch version of upstream learned-cc's training step (docs/upstream.md §Learned
coders, §Losses, §Erasure patterns, §Training loop).

Written from docs/upstream.md, not copied: MLPEncoder, dilated ConvEncoder, MLPDecoder, the frozen
base-mlp F (``eval()``, ``requires_grad=False``; gradients still flow through it into the
encoder), erasure masks built as upstream (``in_decode.repeat(1, k, 1)`` times ``erase_mask``),
the masked KL loss summed over classes and averaged over (group, scenario) pairs, upstream's
per-batch reconstruction / overall accuracy counts, and two ``Adam(lr=1e-3, weight_decay=1e-5)``
optimizers. Only the data loading differs: a batch is gathered by tensor indexing from
tensors already in memory (upstream's per-sample ``DataLoader`` would only be slower).

torch is optional; importing this module without it raises ImportError.
"""
from __future__ import annotations

import torch
from torch import nn


def init_weights(module: nn.Module) -> None:
  """Upstream's ``util.init_weights``: Linear N(0, 0.01), Conv xavier-uniform gain √2, bias 0."""
  if isinstance(module, nn.Linear):
    nn.init.normal_(module.weight, 0.0, 0.01)
    nn.init.zeros_(module.bias)
  elif isinstance(module, nn.Conv2d):
    nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain("relu"))
    nn.init.zeros_(module.bias)


class MLPEncoder(nn.Module):
  """(B, k, D) → Linear(kD, kD) ReLU Linear(kD, rD) → (B, r, D)."""

  def __init__(self, k: int, r: int, in_dim: int):
    super().__init__()
    self.k, self.r, self.in_dim = k, r, in_dim
    self.nn = nn.Sequential(nn.Linear(k * in_dim, k * in_dim), nn.ReLU(),
                            nn.Linear(k * in_dim, r * in_dim))

  def forward(self, x):
    return self.nn(x.view(x.size(0), -1)).view(x.size(0), self.r, self.in_dim)


class ConvEncoder(nn.Module):
  """k planes as k NCHW channels → six dilated 3×3 convs, ReLU → 1×1 conv → (B, r, H·W)."""

  def __init__(self, k: int, r: int, in_dim: int, intermediate_channels: int = 20):
    super().__init__()
    self.k, self.r, self.side = k, r, int(round(in_dim**0.5))
    assert self.side * self.side == in_dim, in_dim
    c = intermediate_channels * k
    layers, cin = [], k
    for dilation in (1, 1, 2, 4, 8, 1):
      layers += [nn.Conv2d(cin, c, 3, padding=dilation, dilation=dilation), nn.ReLU()]
      cin = c
    layers.append(nn.Conv2d(c, r, 1))
    self.nn = nn.Sequential(*layers)

  def forward(self, x):
    out = self.nn(x.view(-1, self.k, self.side, self.side))
    return out.view(out.size(0), self.r, -1)


class MLPDecoder(nn.Module):
  """(B, k+r, C) → Linear((k+r)C) ReLU Linear(kC) ReLU Linear(kC) → (B, k, C)."""

  def __init__(self, k: int, r: int, num_classes: int):
    super().__init__()
    n, self.k, self.c = k + r, k, num_classes
    self.nn = nn.Sequential(nn.Linear(n * num_classes, n * num_classes), nn.ReLU(),
                            nn.Linear(n * num_classes, k * num_classes), nn.ReLU(),
                            nn.Linear(k * num_classes, k * num_classes))

  def forward(self, x):
    return self.nn(x.view(x.size(0), -1)).view(x.size(0), self.k, self.c)


class BaseMLP(nn.Module):
  """base-mlp: 784 → 200 → 100 → 10 with ReLUs (178,110 parameters)."""

  def __init__(self, in_dim: int = 784, num_classes: int = 10):
    super().__init__()
    self.nn = nn.Sequential(nn.Linear(in_dim, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(),
                            nn.Linear(100, num_classes))

  def forward(self, x):
    return self.nn(x.view(x.size(0), -1))


def masked_kl(pred_xC, target_xC, mask_x):
  """Upstream ``MaskedLoss(KLDivLoss)``: Σ mask·KL(softmax(target) ‖ softmax(pred)) / #mask."""
  elem = nn.functional.kl_div(torch.log_softmax(pred_xC, dim=1), torch.softmax(target_xC, dim=1),
                              reduction="none")
  return torch.sum(elem * mask_x[:, None]) / torch.count_nonzero(mask_x)


class Trainer:
  """Upstream's CodeTrainer train step (r = 1 masks: the k single-data-erasure scenarios)."""

  def __init__(self, encoder: str, k: int, num_classes: int = 10, in_dim: int = 784,
               r: int = 1, seed: int = 0, device: str = "cpu", compiled: bool = False):
    torch.manual_seed(seed)
    self.k, self.r, self.c = k, r, num_classes
    self.base = BaseMLP(in_dim, num_classes)
    self.base.apply(init_weights)
    self.base.eval()
    for p in self.base.parameters():
      p.requires_grad = False
    self.enc = (MLPEncoder(k, r, in_dim) if encoder == "mlp" else ConvEncoder(k, r, in_dim))
    self.dec = MLPDecoder(k, r, num_classes)
    self.enc.apply(init_weights)
    self.dec.apply(init_weights)
    for module in (self.base, self.enc, self.dec):
      module.to(device)
    if compiled:  # what a PyTorch user would try today: the modules through torch.compile
      self.base, self.enc, self.dec = (torch.compile(m) for m in (self.base, self.enc, self.dec))
    self.enc_opt = torch.optim.Adam(self.enc.parameters(), lr=1e-3, weight_decay=1e-5)
    self.dec_opt = torch.optim.Adam(self.dec.parameters(), lr=1e-3, weight_decay=1e-5)
    # §Erasure patterns: scenario s zeroes output s of the k+1; acc_mask marks the scored slot.
    erase = torch.ones(k, k + r, num_classes)
    acc = torch.zeros(k, k, dtype=torch.uint8)
    for s in range(k):
      erase[s, s, :] = 0.0
      acc[s, s] = 1
    self.erase_mask, self.acc_mask = erase.to(device), acc.to(device)

  def base_outputs(self, x_NxD):
    with torch.no_grad():
      return self.base(x_NxD)

  def step(self, x_BxKxD, y_BxKxC, labels_BxK):
    """One optimisation step; returns (loss, #reconstructed = F's class, #overall correct)."""
    b, k, c = x_BxKxD.size(0), self.k, self.c
    self.enc.train()
    self.dec.train()
    self.enc_opt.zero_grad()
    self.dec_opt.zero_grad()
    parity = self.enc(x_BxKxD)
    pout = self.base(parity.view(b * self.r, -1)).view(b, -1, c)
    in_decode = torch.cat((y_BxKxC, pout), dim=1)
    masked = in_decode.repeat(1, k, 1).view(b * k, k + self.r, c) * self.erase_mask.repeat(
        b, 1, 1)
    decoded = self.dec(masked)
    pred = decoded.view(-1, c)
    target = y_BxKxC.repeat(1, k, 1).view(-1, c)
    mask = self.acc_mask.repeat(b, 1).view(-1)
    loss = masked_kl(pred, target, mask)
    loss.backward()
    self.enc_opt.step()
    self.dec_opt.step()
    with torch.no_grad():  # upstream's per-batch stats
      chosen = mask.bool()
      hit = pred.argmax(1)[chosen]
      recon = (hit == target.argmax(1)[chosen]).sum()
      overall = (hit == labels_BxK.repeat(1, k).view(-1)[chosen]).sum()
    return loss.detach(), recon, overall


class TorchLoop:
  """Runs ``Trainer.step`` on a rotating set of batches (the same index arrays as our side)."""

  def __init__(self, encoder: str, k: int, batch_indices, num: int = 4096, in_dim: int = 784,
               num_classes: int = 10, seed: int = 1, device: str = "cpu", compiled: bool = False):
    self.trainer = Trainer(encoder, k, num_classes, in_dim, device=device, compiled=compiled)
    gen = torch.Generator().manual_seed(seed)
    self.x = torch.rand(num, in_dim, generator=gen).to(device)
    self.y = self.trainer.base_outputs(self.x)
    self.labels = torch.randint(0, num_classes, (num,), generator=gen).to(device)
    self.idx = [torch.as_tensor(i, dtype=torch.long, device=device) for i in batch_indices]
    self.device = device
    self.calls = 0

  def __call__(self, n: int) -> None:
    for _ in range(n):
      idx = self.idx[self.calls % len(self.idx)]
      self.trainer.step(self.x[idx], self.y[idx], self.labels[idx])
      self.calls += 1
    if self.device != "cpu":
      torch.cuda.synchronize()
