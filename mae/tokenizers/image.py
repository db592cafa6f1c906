"""Images -> non-overlapping p x p patches on an (H/p, W/p) grid."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mae.masking import grid_coords
from mae.types import Tokens


def as_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An int or a pair -> (H, W)."""
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def patchify(images: Tensor, patch: int) -> Tensor:
    """(B, C, H, W) -> (B, N, C*p*p), each token flattened in (C, p, p) order (as a conv weight)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(values: Tensor, grid: tuple[int, int], patch: int) -> Tensor:
    """(B, N, C*p*p) -> (B, C, H, W), the inverse of `patchify`."""
    b, n, d = values.shape
    gh, gw = grid
    c = d // (patch * patch)
    x = values.reshape(b, gh, gw, c, patch, patch)  # (B, h, w, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, h, p, w, p)
    return x.reshape(b, c, gh * patch, gw * patch)


class ImageTokenizer(nn.Module):
    """batch["image"] (B, C, H, W) -> Tokens(values (B, N, C*p*p), pos (1, N, 2) = (row, col), grid (h, w))."""

    def __init__(self, *, image_size: int | list[int], channels: int, patch_size: int, key: str = "image") -> None:
        super().__init__()
        h, w = as_hw(image_size)
        if patch_size < 1 or h % patch_size or w % patch_size:
            divisors = [p for p in range(2, min(h, w) + 1) if h % p == 0 and w % p == 0]
            raise ValueError(
                f"tokenizer.patch_size={patch_size} does not divide the image size {h}x{w} (data.image_size); "
                f"choose a patch size among {divisors} or an image size that is a multiple of {patch_size}"
            )
        self.image_size, self.channels, self.patch_size, self.key = (h, w), channels, patch_size, key
        self.grid = (h // patch_size, w // patch_size)
        self.token_dim = channels * patch_size * patch_size
        self.register_buffer("pos", grid_coords(self.grid, device=torch.device("cpu"))[None], persistent=False)

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        images = batch[self.key]
        if tuple(images.shape[1:]) != (self.channels, *self.image_size):
            raise ValueError(
                f"expected {self.key} batches of shape (B, {self.channels}, {self.image_size[0]}, "
                f"{self.image_size[1]}), got {tuple(images.shape)}: check data.channels / data.image_size"
            )
        return Tokens(values=patchify(images, self.patch_size), pos=self.pos, grid=self.grid)

    def unpatchify(self, values: Tensor) -> Tensor:
        """(B, N, C*p*p) token values -> (B, C, H, W) images, for pictures."""
        return unpatchify(values, self.grid, self.patch_size)
