"""Start-up check that the chosen target fits the modality's tokens, read from the classes' declarations
(`Tokenizer.layout`, `Target.layouts`) before either is built, so that a mismatch such as `modality=timeseries
target=hog` names the targets that fit instead of failing on an interpolation (`${data.channels}`) of the wrong one."""
from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from mae.core.interfaces import Target, Tokenizer

TARGET_DIR = Path(__file__).resolve().parents[2] / "conf" / "target"


def target_options(target_dir: Path = TARGET_DIR) -> dict[str, type[Target]]:
    """Option name (conf/target/<name>.yaml) -> its Target class, for every option whose `_target_` is a Target."""
    options = {}
    for path in sorted(target_dir.glob("*.yaml")):
        dotted = OmegaConf.load(path).get("_target_")
        if isinstance(dotted, str):
            cls = get_class(dotted)
            if isinstance(cls, type) and issubclass(cls, Target):
                options[path.stem] = cls
    return options


def fits(target: type[Target], tokenizer: type[Tokenizer]) -> bool:
    return target.layouts is None or tokenizer.layout in target.layouts


def chosen_modality() -> str | None:
    """The `modality=` choice of this Hydra run (None outside one, e.g. a config composed by a test)."""
    return HydraConfig.get().runtime.choices.get("modality") if HydraConfig.initialized() else None


def check_target_fits_tokens(cfg: DictConfig, target_dir: Path = TARGET_DIR) -> None:
    """Raise ValueError when `target._target_` declares layouts that exclude `tokenizer._target_`'s layout; the
    message lists the target options that fit. Configs without both `_target_`s, or with classes that are not a
    Tokenizer / Target, are left to the constructors."""
    target_path = OmegaConf.select(cfg, "target._target_", throw_on_resolution_failure=False)
    tokenizer_path = OmegaConf.select(cfg, "tokenizer._target_", throw_on_resolution_failure=False)
    if not isinstance(target_path, str) or not isinstance(tokenizer_path, str):
        return
    target, tokenizer = get_class(target_path), get_class(tokenizer_path)
    if not (issubclass(target, Target) and issubclass(tokenizer, Tokenizer)) or fits(target, tokenizer):
        return
    options = target_options(target_dir)
    name = next((n for n, cls in options.items() if cls is target), target.__name__)
    fitting = [n for n, cls in options.items() if fits(cls, tokenizer)]
    modality = chosen_modality()
    source = f"modality={modality} ({tokenizer.__name__})" if modality else f"the tokenizer {tokenizer.__name__}"
    raise ValueError(
        f"target={name} needs {' or '.join(target.layouts or ())}, and {source} makes {tokenizer.layout}: "
        f"choose one of {', '.join(f'target={n}' for n in fitting)}"
    )
