"""Reconstruction pictures of modality=timeseries (`pictures: {_target_: mae.modalities.timeseries.pictures.SeriesPictures}`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from mae.core.interfaces import EvalData, Pictures
from mae.core.pictures import save_figure
from mae.core.tokens import Tokens
from mae.modalities.timeseries.tokenizer import PatchTSTTokenizer, unpatchify_1d


class SeriesPictures(Pictures):
    """The reconstruction panels of modality=timeseries (see `draw`)."""

    def draw(self, panels: dict[str, Tensor], tokens: Tokens, note: str, path: Path, *, tokenizer: PatchTSTTokenizer,
             data: EvalData) -> Figure:
        """One row per (sample, channel) series (at most 6): the normalised series, its hidden patches shaded,
        and the reconstruction of the hidden patches (dashed red)."""
        series = {k: unpatchify_1d(v.float()).cpu().numpy() for k, v in panels.items()}  # (R, T)
        rows = min(6, series["original"].shape[0])
        t = np.arange(series["original"].shape[1])
        fig = Figure(figsize=(9, 1.5 * rows + 0.6))
        axes = fig.subplots(rows, 1, squeeze=False)
        hidden = np.isnan(series["masked"])
        for r in range(rows):
            ax = axes[r, 0]
            ax.plot(t, series["original"][r], color="0.2", lw=0.9, label="series")
            for start in np.flatnonzero(hidden[r][:: tokenizer.patch_len]):
                ax.axvspan(start * tokenizer.patch_len, (start + 1) * tokenizer.patch_len, color="0.85", lw=0)
            if "reconstruction" in series:
                ax.plot(t, series["reconstruction"][r], color="tab:red", lw=1.1, ls="--", label="reconstruction")
            if tokens.pad is not None:
                pad = tokens.pad[r].repeat_interleave(tokenizer.patch_len).cpu().numpy()
                ax.fill_between(t, 0, 1, where=pad, transform=ax.get_xaxis_transform(), color="tab:blue", alpha=0.1)
            ax.set_ylabel(f"row {r}", fontsize=7)
            ax.tick_params(labelsize=7)
        axes[0, 0].legend(fontsize=7, loc="upper right")
        return save_figure(fig, path, title=f"{note}\ngrey = hidden patches; values in RevIN units (per-series mean/std)",
                           top=0.94)
