"""Pictures of a fine-tuning run's test metrics."""
from __future__ import annotations

from pathlib import Path

from torch import Tensor


def draw_confusion(confusion: Tensor, per_class: Tensor, classes: list[str], path: Path) -> None:
    """confusion (K, K) counts (rows = true class), per_class (K,) accuracy -> a two-panel figure at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = confusion.shape[0]
    names = classes if len(classes) == k else [str(i) for i in range(k)]
    rows = confusion.float() / confusion.sum(dim=1, keepdim=True).clamp_min(1)  # (K, K) share of each true class
    fig, (left, right) = plt.subplots(1, 2, figsize=(4 + 0.5 * k, 3 + 0.3 * k), width_ratios=[3, 2])
    image = left.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    left.set(xlabel="predicted", ylabel="true", title="confusion (share of the true class)")
    ticks = range(k) if k <= 30 else range(0, k, max(1, k // 30))
    left.set_xticks(list(ticks), [names[i] for i in ticks], rotation=90, fontsize=7)
    left.set_yticks(list(ticks), [names[i] for i in ticks], fontsize=7)
    fig.colorbar(image, ax=left, fraction=0.046)
    right.barh(range(k), per_class.numpy())
    right.set(xlim=(0, 1), xlabel="accuracy", title="per class")
    right.set_yticks(list(ticks), [names[i] for i in ticks], fontsize=7)
    right.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
