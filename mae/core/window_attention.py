"""Local (shifted-window) decoder blocks on a 2-D token grid: Audio-MAE's decoder (`decoder_mode=1`).

A faithful port of facebookresearch/AudioMAE models_mae.py (decoder_mode 1) and the Swin block it builds,
timm_patch/swin_transformer.py `SwinTransformerBlock` (a Swin V2 "cr" block that the repository copies over timm's):

- the decoder drops the cls (prefix) token before these blocks (`x = x[:, 1:, :]`): they see only the grid;
- windows of `window` tokens (4 x 4 on the (time, freq) = (64, 8) grid); a window larger than the grid on an axis
  is clamped to the grid there and that axis is never shifted (`_calc_window_shift`);
- every odd block rolls the grid by half a window on the TIME axis only (`shift_size = (2, 0)`), attends in the
  windows with Swin's -100 mask between tokens that the roll brought together, and rolls back;
- attention is scaled cosine attention, q.k / (|q| |k|) / tau (tau a learned per-head temperature, init 1, clamped at
  0.01), plus a relative position bias from a meta MLP (2 -> 384 -> heads, ReLU, dropout 0.1) of the log-spaced
  relative coordinates sign(d) log(1 + |d|) of the window's token pairs (`WindowMultiHeadAttention`);
- post-norm residual branches: x + norm1(attn(x)), then x + norm2(mlp(x)).

The parameter names are the official ones (attn.qkv, attn.proj, attn.meta_mlp.fc1/fc2, attn.tau, norm1, mlp.fc1/fc2,
norm2), so the official decoder_blocks.* weights load into `window_blocks` as they are. timm's own
`SwinTransformerV2CrBlock` is not reused: it shifts both axes by half a window, uses a logit scale (init log 10)
instead of tau and a meta-MLP dropout of (0.125, 0): not the block Audio-MAE ran.
"""
from __future__ import annotations

import torch
from timm.layers import Mlp
from torch import Tensor, nn

from mae.core.encoder import LayerNorm


def fit_window(grid: tuple[int, ...], window: list[int], shift: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """(window, shift) on `grid` as the official `_calc_window_shift`: an axis no longer than its window gets the whole
    axis as window and no shift; the target shift is (window_t // 2, 0), time only (models_mae.py `shift_size=(2,0)`)."""
    if grid is None or len(grid) != 2 or len(window) != 2:
        raise ValueError(f"model.decoder.window={window} needs two window sizes and tokens on a 2-D (time, freq) grid, "
                         f"got grid {grid}")
    target_shift = (window[0] // 2, 0) if shift else (0, 0)
    win = tuple(g if g <= w else w for g, w in zip(grid, window))
    sh = tuple(0 if g <= w else s for g, w, s in zip(grid, win, target_shift))
    if any(g % w for g, w in zip(grid, win)):
        raise ValueError(f"model.decoder.window={window} must divide the token grid {tuple(grid)} on every axis "
                         "(Audio-MAE partitions the grid into whole windows): pick window sizes that divide it, or "
                         "change data.frames / data.mel_bins / tokenizer.patch_size")
    return win, sh


def window_partition(x: Tensor, window: tuple[int, int]) -> Tensor:
    """(B, H, W, C) -> (B * nW, wh, ww, C), windows in row-major order (timm_patch window_partition)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window[0], window[0], w // window[1], window[1], c)  # (B, H/wh, wh, W/ww, ww, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window[0], window[1], c)


def window_reverse(windows: Tensor, window: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """(B * nW, wh, ww, C) -> (B, H, W, C), the inverse of `window_partition`."""
    h, w = grid
    b = windows.shape[0] // (h * w // (window[0] * window[1]))
    x = windows.view(b, h // window[0], w // window[1], window[0], window[1], -1)  # (B, H/wh, W/ww, wh, ww, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def shift_attn_mask(grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int],
                    device: torch.device | None = None) -> Tensor | None:
    """(nW, L, L) additive mask of the shifted windows, 0 within a region and -100 across regions (the official
    `_make_attention_mask`, slice for slice); None without a shift."""
    if not any(shift):
        return None
    h, w = grid
    img_mask = torch.zeros((1, h, w, 1), device=device)  # (1, H, W, 1) region labels
    cnt = 0
    for hs in (slice(0, -window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for ws in (slice(0, -window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            img_mask[:, hs, ws, :] = cnt
            cnt += 1
    mask_windows = window_partition(img_mask, window).view(-1, window[0] * window[1])  # (nW, L)
    attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)  # (nW, L, L)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)


def relative_coords_log(window: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """(L * L, 2) log-spaced relative coordinates sign(d) log(1 + |d|) of every token pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window[0], device=device), torch.arange(window[1], device=device),
                                        indexing="ij"), dim=0).flatten(1)  # (2, L)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).reshape(-1, 2).float()  # (L * L, 2)
    return torch.sign(rel) * torch.log1p(rel.abs())


class WindowAttention(nn.Module):
    """Scaled cosine multi-head attention inside windows with a log-spaced continuous relative position bias
    (official WindowMultiHeadAttention); (B * nW, L, C) -> (B * nW, L, C)."""

    def __init__(self, *, dim: int, num_heads: int, meta_hidden_dim: int = 384, meta_drop: float = 0.1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"model.decoder.dim={dim} is not divisible by model.decoder.num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.meta_mlp = Mlp(2, hidden_features=meta_hidden_dim, out_features=num_heads, act_layer=nn.ReLU,
                            drop=meta_drop)
        self.tau = nn.Parameter(torch.ones(num_heads))

    def position_bias(self, window: tuple[int, int]) -> Tensor:
        """(1, heads, L, L) relative position bias of a window."""
        area = window[0] * window[1]
        bias = self.meta_mlp(relative_coords_log(window, self.tau.device).to(self.tau.dtype))  # (L * L, heads)
        return bias.transpose(1, 0).reshape(self.num_heads, area, area).unsqueeze(0)

    def forward(self, x: Tensor, window: tuple[int, int], mask: Tensor | None = None) -> Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B * nW, heads, L, C / heads) each
        denom = torch.norm(q, dim=-1, keepdim=True) @ torch.norm(k, dim=-1, keepdim=True).transpose(-2, -1)
        attn = q @ k.transpose(-2, -1) / denom.clamp(min=1e-6)  # (B * nW, heads, L, L) cosine similarities
        attn = attn / self.tau.clamp(min=0.01).reshape(1, self.num_heads, 1, 1)
        attn = attn + self.position_bias(window).to(attn.dtype)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask.to(attn.dtype).unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, -1)  # (B * nW, L, C)
        return self.proj(x)


class WindowBlock(nn.Module):
    """Post-norm Swin block on the (time, freq) grid, unshifted or shifted on time: (B, N, C) -> (B, N, C)."""

    def __init__(self, *, dim: int, num_heads: int, window: list[int], shift: bool, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window, self.shift = [int(w) for w in window], bool(shift)
        self.attn = WindowAttention(dim=dim, num_heads=num_heads)
        self.norm1 = LayerNorm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio))
        self.norm2 = LayerNorm(dim)
        self._masks: dict[tuple, Tensor | None] = {}

    def attn_mask(self, grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int],
                  device: torch.device) -> Tensor | None:
        key = (grid, window, shift, str(device))
        if key not in self._masks:
            self._masks[key] = shift_attn_mask(grid, window, shift, device)
        return self._masks[key]

    def window_attn(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        window, shift = fit_window(grid, self.window, self.shift)
        b, n, c = x.shape
        x = x.view(b, grid[0], grid[1], c)  # (B, T, F, C)
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = window_partition(x, window).view(-1, window[0] * window[1], c)  # (B * nW, L, C)
        windows = self.attn(windows, window, self.attn_mask(grid, window, shift, x.device))
        x = window_reverse(windows.view(-1, window[0], window[1], c), window, grid)  # (B, T, F, C)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x.reshape(b, n, c)

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        x = x + self.norm1(self.window_attn(x, grid))  # post-norm branches (op -> norm)
        return x + self.norm2(self.mlp(x))


def window_blocks(*, dim: int, depth: int, num_heads: int, mlp_ratio: float, window: list[int],
                  shift: bool) -> nn.ModuleList:
    """`depth` WindowBlocks, every odd one shifted on time when `shift` (models_mae.py: `shift_size = (0, 0)` if
    index % 2 == 0 else (2, 0); `no_shift` = shift false)."""
    if len(window) != 2:
        raise ValueError(f"model.decoder.window must hold two sizes (time, freq) for Audio-MAE's local decoder, got "
                         f"{window}")
    return nn.ModuleList(WindowBlock(dim=dim, num_heads=num_heads, window=window, shift=shift and i % 2 == 1,
                                     mlp_ratio=mlp_ratio) for i in range(depth))
