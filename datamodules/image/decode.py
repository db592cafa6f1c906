"""Image files -> (C, h, w) uint8 tensors with PIL, including the bit depths that PIL's `convert("L")` would clip
to 255 (16-bit and 32-bit integer, float): those are rescaled to 0..255, or refused with the value range.

| PIL mode            | what it holds                               | to 8 bits                                      |
|---------------------|---------------------------------------------|------------------------------------------------|
| I;16, I;16B, I;16L  | 16-bit grey (PNG, TIFF)                     | round(v / 257): 65535 -> 255, 257 * k -> k     |
| I                   | 32-bit integer grey (TIFF; 16-bit PNGs on   | read as 16-bit data: values in 0..65535 ->     |
|                     | some Pillow versions)                       | round(v / 257); any other value is refused     |
| F                   | 32-bit float grey (TIFF)                    | values in [0, 1] -> round(v * 255); values     |
|                     |                                             | outside [0, 1] or non-finite are refused       |
| every other mode    | 8 bits per channel                          | PIL's convert                                  |

A refused file raises LoadError (kind "out_of_range" or "non_finite") naming it and its value range, so that
data.on_error="skip" drops it with a warning and counts it; nothing is saturated silently.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from datamodules.errors import LoadError

UINT16_MAX = 65535


class PixelRangeError(ValueError):
    """Pixel values that no rescaling maps to 0..255 faithfully; `kind` is "out_of_range" or "non_finite"."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _from_16bit(values: np.ndarray, what: str) -> np.ndarray:
    """(h, w) integers in 0..65535 -> (h, w) uint8, round(v / 257)."""
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > UINT16_MAX:
        raise PixelRangeError(f"{what} pixels span [{low}, {high}], outside the 16-bit range [0, {UINT16_MAX}]; "
                              "convert the file to 8 or 16 bits", kind="out_of_range")
    return ((values.astype(np.int64) + 128) // 257).astype(np.uint8)


def _from_float(values: np.ndarray) -> np.ndarray:
    """(h, w) floats in [0, 1] -> (h, w) uint8, round(v * 255)."""
    if not np.isfinite(values).all():
        raise PixelRangeError(f"float pixels hold {int((~np.isfinite(values)).sum())} non-finite value(s)",
                              kind="non_finite")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise PixelRangeError(f"float pixels span [{low:g}, {high:g}], outside [0, 1]; rescale the file to [0, 1] "
                              "or save it as 8/16-bit integers", kind="out_of_range")
    return np.floor(values.astype(np.float64) * 255 + 0.5).astype(np.uint8)


def to_8bit(im: Image.Image) -> Image.Image:
    """`im` in a mode PIL can convert without clipping: 16-bit, 32-bit integer and float grey become mode "L"
    (see the module's table; PixelRangeError when the values do not fit), every other mode is returned as is."""
    if im.mode.startswith("I;16"):
        return Image.fromarray(_from_16bit(np.asarray(im), "16-bit"))
    if im.mode == "I":
        return Image.fromarray(_from_16bit(np.asarray(im), "32-bit integer"))
    if im.mode == "F":
        return Image.fromarray(_from_float(np.asarray(im)))
    return im


class FileImages:
    """Image files decoded with PIL to `mode` ("L" or "RGB"), high bit depths rescaled (`to_8bit`); a failure
    raises LoadError naming the file (kind: the exception type name, "out_of_range" or "non_finite")."""

    def __init__(self, paths: Sequence[Path], *, mode: str) -> None:
        self.paths = list(paths)
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Tensor:
        path = self.paths[index]
        try:
            with Image.open(path) as im:
                return TF.pil_to_tensor(to_8bit(im).convert(self.mode))  # (C, h, w) uint8
        except PixelRangeError as err:
            raise LoadError(path, str(err), kind=err.kind) from err
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
            raise LoadError(path, f"{type(err).__name__}: {err}", kind=type(err).__name__) from err


def verify_image(path: Path) -> None:
    """Cheap pre-scan check: PIL parses the header and checks the file's structure (PNG CRCs, truncation)."""
    with Image.open(path) as im:
        im.verify()
