"""Pre-train a masked autoencoder: `python train.py modality=image mask=block model=tiny ...`.

`python train.py --help` lists the config groups; see README.md.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from mae.train.legacy import upgrade_overrides


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from mae.train.runner import objective_value, run  # imported late: `--help` stays fast

    return objective_value(run(cfg), cfg.objective)


if __name__ == "__main__":
    sys.argv[1:], notes = upgrade_overrides(sys.argv[1:])
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    main()
