"""Start-up check that the encoder and the decoder agree on which latents flow between them, read from the classes'
declarations (`MAEEncoder.latents`, `MAEDecoder.reads`) before either is built: the one-layer head of SimMIM /
MaskFeat (LinearDecoder) reads the hidden tokens out of an encoder that saw every token, and the MAE decoder puts its
mask tokens after the visible latents; either one with the other encoder would fail at step 1 (or, for the MAE
decoder, silently restore the wrong tokens)."""
from __future__ import annotations

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from mae.core.interfaces import MAEDecoder, MAEEncoder

FIX = {
    "all": "model=simmim or model=maskfeat (mae.core.mask_token_encoder.MaskTokenEncoder: every token, [MASK] in "
           "place of the hidden ones), model=patchtst for time series, or set model.encoder._target_ to such an encoder",
    "visible": "model.decoder._target_=mae.core.decoder.Decoder (the MAE decoder, with its dim / depth / num_heads), "
               "or model=simmim / model=maskfeat for the whole mask-token family",
}


def model_errors(cfg: DictConfig) -> list[str]:
    """One message when `model.encoder._target_` declares latents that `model.decoder._target_` does not read;
    classes that declare nothing (None) are left to their constructors and forward checks."""
    paths = [OmegaConf.select(cfg, f"model.{part}._target_", throw_on_resolution_failure=False)
             for part in ("encoder", "decoder")]
    if not all(isinstance(p, str) for p in paths):
        return []
    try:
        encoder, decoder = (get_class(p) for p in paths)
    except (ImportError, ValueError):
        return []  # a wrong _target_ is reported by instantiate with its own message
    if not (isinstance(encoder, type) and issubclass(encoder, MAEEncoder)
            and isinstance(decoder, type) and issubclass(decoder, MAEDecoder)):
        return []
    if encoder.latents is None or decoder.reads is None or encoder.latents == decoder.reads:
        return []
    what = {"all": "the latents of every token (prefix+N)", "visible": "the latents of the visible tokens (prefix+K)"}
    return [f"model.decoder._target_={paths[1]} reads {what[decoder.reads]}, but model.encoder._target_={paths[0]} "
            f"returns {what[encoder.latents]}: use {FIX[decoder.reads]}"]
