"""The end-of-run table of a fine-tuning run: each metric of the pretrained encoder beside the from-scratch one."""
from __future__ import annotations

from mae.eval.report import COUNT_PREFIXES, _fmt

SCRATCH_SUFFIX = "_scratch"
"""Suffix of the metrics of the same recipe trained from a random initialisation (`finetune.scratch_baseline`)."""
BOOKKEEPING = ("finetune/fit_seconds", "finetune/epochs", "finetune/steps", "finetune/train_samples")
"""Keys with a scratch twin that are not results: listed as plain lines, not compared."""
LOWER_IS_BETTER = ("loss", "mse", "mae")
"""Metric names (the part after `finetune/`, up to a `_h<H>` horizon) where lower is better."""


def gain(key: str, pretrained: float, scratch: float) -> float:
    """What pre-training bought on `key`: positive when the pretrained encoder does better (lower for errors)."""
    name = key.split("/")[-1].split("_")[0]
    return scratch - pretrained if name in LOWER_IS_BETTER else pretrained - scratch


def format_finetune_summary(metrics: dict[str, float]) -> str:
    """Rows `finetune/<m>` with a `<m>_scratch` twin as a two-column table (pretrained, from scratch) with the gain
    (positive = pretrained better, lower-is-better metrics included) and `<- scratch wins` where it is negative;
    every other key as a plain line."""
    paired = [k for k in metrics if k + SCRATCH_SUFFIX in metrics and k not in BOOKKEEPING]
    twins = {k + SCRATCH_SUFFIX for k in paired}
    others = [k for k in metrics if k not in twins and k not in paired]
    width = max([len("metric"), *(len(k) for k in [*paired, *others])])
    col = len("from scratch")
    lines: list[str] = []
    if paired:
        lines.append(f"{'metric':<{width}}  {'pretrained':>{col}}  {'from scratch':>{col}}  {'gain':>8}")
        lines.append("-" * (width + 2 * col + 14))
        for k in paired:
            pre, scratch = float(metrics[k]), float(metrics[k + SCRATCH_SUFFIX])
            g = gain(k, pre, scratch)
            lines.append(f"{k:<{width}}  {_fmt(pre):>{col}}  {_fmt(scratch):>{col}}  {g:>+8.4f}"
                         + ("  <- scratch wins" if g < 0 else ""))
        lines.append("")
    for k in others:
        value = float(metrics[k])
        count = k.startswith(COUNT_PREFIXES) and value.is_integer()
        lines.append(f"{k:<{width}}  {int(value) if count else _fmt(value)}")
    return "\n".join(lines)
