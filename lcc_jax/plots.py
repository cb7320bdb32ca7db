"""PNG plots of a run (matplotlib, headless)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves(entries: list[dict], path: str, title: str = "") -> None:
  """Loss and accuracies per epoch for every split in metrics.jsonl."""
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for split in sorted({e["split"] for e in entries}):
    rows = [e for e in entries if e["split"] == split]
    epochs = [e["epoch"] for e in rows]
    for ax, key in zip(axes, ("loss", "reconstruction_top1", "degraded_top1")):
      ax.plot(epochs, [e.get(key, float("nan")) for e in rows], label=split)
      ax.set_xlabel("epoch")
      ax.set_title(key)
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def per_pattern(per_pattern_entries: list[dict], path: str, base_accuracy: float | None = None,
                title: str = "") -> None:
  """Reconstruction and degraded top-1 of every erasure pattern."""
  labels = [",".join(map(str, p["unavailable"])) for p in per_pattern_entries]
  xs = range(len(labels))
  fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(labels) + 2), 4))
  width = 0.4
  ax.bar([x - width / 2 for x in xs], [p["reconstruction_top1"] for p in per_pattern_entries],
         width, label="reconstruction top-1 (agreement with F)")
  ax.bar([x + width / 2 for x in xs], [p["degraded_top1"] for p in per_pattern_entries], width,
         label="degraded top-1 (vs label)")
  if base_accuracy is not None:
    ax.axhline(base_accuracy, color="k", ls="--", lw=1, label=f"F test accuracy {base_accuracy:.3f}")
  ax.set_xticks(list(xs), labels, rotation=90 if len(labels) > 12 else 0)
  ax.set_xlabel("unavailable slots")
  ax.set_ylim(0, 1)
  ax.legend(loc="lower right", fontsize=8)
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
