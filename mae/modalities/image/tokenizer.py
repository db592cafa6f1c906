"""Images -> non-overlapping p x p patches on an (H/p, W/p) grid."""
from __future__ import annotations

import torch
from torch import Tensor

from mae.core.grid import as_hw, grid_coords, patchify, unpatchify
from mae.core.interfaces import Tokenizer
from mae.core.tokens import Tokens


class ImageTokenizer(Tokenizer):
    """batch["image"] (B, C, H, W) -> Tokens(values (B, N, C*p*p), pos (1, N, 2) = (row, col), grid (h, w))."""

    layout = "image patches"

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
