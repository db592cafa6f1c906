"""PatchTST against its official code (yuqinie98/PatchTST, PatchTST_self_supervised): `model=patchtst` run on the same
weights, input and mask as a small port of the official encoder layer (BatchNorm, post-norm, residual attention),
pretrain head, `random_masking` and masked loss; the recipes composed with the real Hydra config and their key
values asserted; a tiny `train.py` run of each model end to end with the probes."""
from __future__ import annotations

import json
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn

from mae.core.interfaces import Masker
from mae.core.linear_decoder import LinearDecoder
from mae.core.losses import masked_mse
from mae.core.masking import RandomMasker, num_masked
from mae.core.module import MAEModule
from mae.core.tokens import Mask, Tokens
from mae.modalities.timeseries.encoder import PatchTSTEncoder
from mae.modalities.timeseries.pos_embed import LearnedPosEmbed
from mae.modalities.timeseries.targets import RevINPatchTarget
from mae.modalities.timeseries.tokenizer import PatchTSTTokenizer
from mae.train.config_check import validate
from mae.train.distributed import describe, resolve_batch
from tests.conftest import ROOT, compose_cfg


# ------------------------------------------------------------ ports of the official code (reference only, verbatim
# but for Transpose / get_activation_fn inlined and the unused branches (store_attn, lsa, masks) dropped)
class Transpose(nn.Module):  # src/models/layers/basics.py
    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.transpose(*self.dims)


class OfficialSDPA(nn.Module):  # src/models/layers/attention.py ScaledDotProductAttention
    def __init__(self, d_model, n_heads, attn_dropout=0., res_attention=False):
        super().__init__()
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.res_attention = res_attention
        head_dim = d_model // n_heads
        self.scale = nn.Parameter(torch.tensor(head_dim ** -0.5), requires_grad=False)

    def forward(self, q, k, v, prev=None):
        attn_scores = torch.matmul(q, k) * self.scale
        if prev is not None: attn_scores = attn_scores + prev
        attn_weights = F.softmax(attn_scores, dim=-1)
        attn_weights = self.attn_dropout(attn_weights)
        output = torch.matmul(attn_weights, v)
        if self.res_attention: return output, attn_weights, attn_scores
        else: return output, attn_weights


class OfficialMHA(nn.Module):  # src/models/layers/attention.py MultiheadAttention
    def __init__(self, d_model, n_heads, d_k=None, d_v=None, res_attention=False, attn_dropout=0., proj_dropout=0.,
                 qkv_bias=True):
        super().__init__()
        d_k = d_model // n_heads if d_k is None else d_k
        d_v = d_model // n_heads if d_v is None else d_v
        self.n_heads, self.d_k, self.d_v = n_heads, d_k, d_v
        self.W_Q = nn.Linear(d_model, d_k * n_heads, bias=qkv_bias)
        self.W_K = nn.Linear(d_model, d_k * n_heads, bias=qkv_bias)
        self.W_V = nn.Linear(d_model, d_v * n_heads, bias=qkv_bias)
        self.res_attention = res_attention
        self.sdp_attn = OfficialSDPA(d_model, n_heads, attn_dropout=attn_dropout, res_attention=self.res_attention)
        self.to_out = nn.Sequential(nn.Linear(n_heads * d_v, d_model), nn.Dropout(proj_dropout))

    def forward(self, Q, K=None, V=None, prev: Tensor | None = None):
        bs = Q.size(0)
        if K is None: K = Q
        if V is None: V = Q
        q_s = self.W_Q(Q).view(bs, -1, self.n_heads, self.d_k).transpose(1, 2)
        k_s = self.W_K(K).view(bs, -1, self.n_heads, self.d_k).permute(0, 2, 3, 1)
        v_s = self.W_V(V).view(bs, -1, self.n_heads, self.d_v).transpose(1, 2)
        if self.res_attention:
            output, attn_weights, attn_scores = self.sdp_attn(q_s, k_s, v_s, prev=prev)
        else:
            output, attn_weights = self.sdp_attn(q_s, k_s, v_s)
        output = output.transpose(1, 2).contiguous().view(bs, -1, self.n_heads * self.d_v)
        output = self.to_out(output)
        if self.res_attention: return output, attn_weights, attn_scores
        else: return output, attn_weights


class OfficialTSTEncoderLayer(nn.Module):  # src/models/patchTST.py TSTEncoderLayer
    def __init__(self, d_model, n_heads, d_ff=256, norm='BatchNorm', attn_dropout=0, dropout=0., bias=True,
                 activation="gelu", res_attention=False, pre_norm=False):
        super().__init__()
        d_k = d_model // n_heads
        d_v = d_model // n_heads
        self.res_attention = res_attention
        self.self_attn = OfficialMHA(d_model, n_heads, d_k, d_v, attn_dropout=attn_dropout, proj_dropout=dropout,
                                     res_attention=res_attention)
        self.dropout_attn = nn.Dropout(dropout)
        if "batch" in norm.lower():
            self.norm_attn = nn.Sequential(Transpose(1, 2), nn.BatchNorm1d(d_model), Transpose(1, 2))
        else:
            self.norm_attn = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff, bias=bias),
                                nn.ReLU() if activation == "relu" else nn.GELU(),
                                nn.Dropout(dropout),
                                nn.Linear(d_ff, d_model, bias=bias))
        self.dropout_ffn = nn.Dropout(dropout)
        if "batch" in norm.lower():
            self.norm_ffn = nn.Sequential(Transpose(1, 2), nn.BatchNorm1d(d_model), Transpose(1, 2))
        else:
            self.norm_ffn = nn.LayerNorm(d_model)
        self.pre_norm = pre_norm

    def forward(self, src: Tensor, prev: Tensor | None = None):
        if self.pre_norm:
            src = self.norm_attn(src)
        if self.res_attention:
            src2, attn, scores = self.self_attn(src, src, src, prev)
        else:
            src2, attn = self.self_attn(src, src, src)
        src = src + self.dropout_attn(src2)
        if not self.pre_norm:
            src = self.norm_attn(src)
        if self.pre_norm:
            src = self.norm_ffn(src)
        src2 = self.ff(src)
        src = src + self.dropout_ffn(src2)
        if not self.pre_norm:
            src = self.norm_ffn(src)
        if self.res_attention:
            return src, scores
        else:
            return src


class OfficialPatchTST(nn.Module):
    """src/models/patchTST.py PatchTST(head_type='pretrain', shared_embedding=True, pe='zeros', learn_pe=True):
    PatchTSTEncoder + TSTEncoder + PretrainHead, forwards inlined."""

    def __init__(self, num_patch, patch_len, n_layers, d_model, n_heads, d_ff, norm, dropout, act, res_attention,
                 pre_norm, head_dropout):
        super().__init__()
        self.d_model, self.res_attention = d_model, res_attention
        self.W_P = nn.Linear(patch_len, d_model)
        W_pos = torch.empty((num_patch, d_model))  # layers/pos_encoding.py positional_encoding('zeros', True, ...)
        nn.init.uniform_(W_pos, -0.02, 0.02)
        self.W_pos = nn.Parameter(W_pos, requires_grad=True)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList([OfficialTSTEncoderLayer(d_model, n_heads=n_heads, d_ff=d_ff, norm=norm,
                                                             dropout=dropout, activation=act,
                                                             res_attention=res_attention, pre_norm=pre_norm)
                                     for i in range(n_layers)])
        self.head_dropout = nn.Dropout(head_dropout)  # PretrainHead
        self.head_linear = nn.Linear(d_model, patch_len)

    def backbone(self, x):  # PatchTSTEncoder.forward + TSTEncoder.forward
        bs, num_patch, n_vars, patch_len = x.shape
        x = self.W_P(x)
        x = x.transpose(1, 2)
        u = torch.reshape(x, (bs * n_vars, num_patch, self.d_model))
        u = self.dropout(u + self.W_pos)
        output, scores = u, None
        if self.res_attention:
            for mod in self.layers: output, scores = mod(output, prev=scores)
        else:
            for mod in self.layers: output = mod(output)
        z = torch.reshape(output, (-1, n_vars, num_patch, self.d_model))
        return z.permute(0, 1, 3, 2)  # [bs x nvars x d_model x num_patch]

    def forward(self, z):
        x = self.backbone(z).transpose(2, 3)  # PretrainHead.forward
        x = self.head_linear(self.head_dropout(x))
        return x.permute(0, 2, 1, 3)  # [bs x num_patch x n_vars x patch_len]


def official_revin_norm(x, eps=1e-5):  # src/models/layers/revin.py RevIN(affine=False) _get_statistics + _normalize
    dim2reduce = tuple(range(1, x.ndim - 1))
    mean = torch.mean(x, dim=dim2reduce, keepdim=True).detach()
    stdev = torch.sqrt(torch.var(x, dim=dim2reduce, keepdim=True, unbiased=False) + eps).detach()
    return (x - mean) / stdev


def official_create_patch(xb, patch_len, stride):  # src/callback/patch_mask.py create_patch
    seq_len = xb.shape[1]
    num_patch = (max(seq_len, patch_len) - patch_len) // stride + 1
    tgt_len = patch_len + stride * (num_patch - 1)
    s_begin = seq_len - tgt_len
    xb = xb[:, s_begin:, :]
    xb = xb.unfold(dimension=1, size=patch_len, step=stride)
    return xb, num_patch


def official_random_masking(xb, mask_ratio):  # src/callback/patch_mask.py random_masking
    bs, L, nvars, D = xb.shape
    x = xb.clone()
    len_keep = int(L * (1 - mask_ratio))
    noise = torch.rand(bs, L, nvars, device=xb.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep, :]
    x_kept = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, 1, D))
    x_removed = torch.zeros(bs, L - len_keep, nvars, D, device=xb.device)
    x_ = torch.cat([x_kept, x_removed], dim=1)
    x_masked = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, 1, D))
    mask = torch.ones([bs, L, nvars], device=x.device)
    mask[:, :len_keep, :] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return x_masked, x_kept, mask, ids_restore


def official_loss(preds, target, mask):  # src/callback/patch_mask.py PatchMaskCB._loss
    loss = (preds - target) ** 2
    loss = loss.mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


def official_to_ours(official: OfficialPatchTST, max_len: int) -> dict[str, Tensor]:
    """The official state dict under our names (MAEModule: encoder.*, decoder.*); W_pos fills the first rows of our
    LearnedPosEmbed table (the others are never looked up)."""
    out = {}
    for name, value in official.state_dict().items():
        if name.endswith("sdp_attn.scale"):
            continue  # a frozen constant, head_dim ** -0.5, in ours too
        if name == "W_pos":
            table = torch.zeros(max_len, value.shape[1])
            table[: value.shape[0]] = value
            out["encoder.pos_embed.weight"] = table
        elif name.startswith("head_linear."):
            out["decoder.head." + name.split(".", 1)[1]] = value
        else:
            out["encoder." + name.replace("norm_attn.1.", "norm_attn.bn.").replace("norm_ffn.1.", "norm_ffn.bn.")] = value
    return out


class FixedMasker(Masker):
    def __init__(self, mask: Mask) -> None:
        self.mask = mask

    def __call__(self, tokens: Tokens, generator: torch.Generator | None = None) -> Mask:
        return self.mask


def official_mask_as_ours(ids_restore: Tensor, len_keep: int) -> Mask:
    """random_masking's (bs, L, nvars) permutation -> our Mask on the channel-folded rows (bs * nvars, L)."""
    bs, n, c = ids_restore.shape
    restore = ids_restore.permute(0, 2, 1).reshape(bs * c, n)  # row b * C + c, as PatchTSTTokenizer folds
    shuffle = torch.argsort(restore, dim=1)  # = ids_shuffle
    return Mask(keep=shuffle[:, :len_keep], masked=shuffle[:, len_keep:], restore=restore)


# ------------------------------------------------------------------------------ the network against the port
@pytest.mark.parametrize("res_attention, act, pre_norm, norm", [(False, "relu", False, "BatchNorm"),
                                                                 (True, "relu", False, "BatchNorm"),
                                                                 (True, "gelu", True, "LayerNorm")])
def test_patchtst_equals_the_official_network_mask_and_loss(res_attention, act, pre_norm, norm):
    """Same weights, same series, same mask: our tokens = RevIN + create_patch, our encoder input = random_masking's
    zeroed patches, our latents = PatchTSTEncoder's, predictions = PretrainHead's at the hidden patches, loss =
    PatchMaskCB._loss; in training mode (BatchNorm on batch statistics, dropout off) and in eval mode."""
    torch.manual_seed(0)
    bs, length, c, p, ratio = 3, 50, 2, 6, 0.4  # 50 steps: the oldest 2 are dropped, 8 patches
    series = torch.randn(bs, length, c) * 3 + 1
    official = OfficialPatchTST(num_patch=8, patch_len=p, n_layers=2, d_model=16, n_heads=4, d_ff=32, norm=norm,
                                dropout=0.0, act=act, res_attention=res_attention, pre_norm=pre_norm, head_dropout=0.0)
    xb_patch, num_patch = official_create_patch(official_revin_norm(series), p, p)  # (bs, N, C, P)
    torch.manual_seed(1)
    x_masked, _, mask, ids_restore = official_random_masking(xb_patch, ratio)
    len_keep = int(num_patch * (1 - ratio))
    assert num_patch - len_keep == num_masked(num_patch, ratio)  # our RandomMasker hides the official count

    encoder = partial(PatchTSTEncoder, dim=16, depth=2, num_heads=4, d_ff=32, dropout=0.0, activation=act, norm=norm,
                      pre_norm=pre_norm, res_attention=res_attention,
                      pos_embed=partial(LearnedPosEmbed, max_len=10))
    ours_mask = official_mask_as_ours(ids_restore, len_keep)
    module = MAEModule(tokenizer=PatchTSTTokenizer(patch_len=p), masker=FixedMasker(ours_mask), encoder=encoder,
                       decoder=partial(LinearDecoder, dropout=0.0), target=RevINPatchTarget(), loss=masked_mse,
                       optimizer=partial(torch.optim.AdamW), batch_size=bs)
    module.load_state_dict(official_to_ours(official, 10))

    fold = lambda t: t.permute(0, 2, 1, 3).reshape(bs * c, num_patch, -1)  # (bs, N, C, X) -> (bs * C, N, X)
    for train in (True, False):
        official.train(train), module.train(train)
        out = module({"series": series})
        tokens = out["tokens"]
        torch.testing.assert_close(tokens.values, fold(xb_patch), rtol=1e-5, atol=1e-5)
        zeroed = tokens.values.masked_fill(ours_mask.mask_token_at().unsqueeze(-1), 0.0)
        torch.testing.assert_close(zeroed, fold(x_masked), rtol=1e-5, atol=1e-5)  # the encoder's input
        latent = module.encoder(tokens, ours_mask)  # (bs * C, N, D)
        reference = official.backbone(x_masked).permute(0, 1, 3, 2).reshape(bs * c, num_patch, 16)
        torch.testing.assert_close(latent, reference, rtol=1e-4, atol=1e-5)
        preds = official(x_masked)  # (bs, N, C, P)
        hidden = torch.gather(fold(preds), 1, ours_mask.masked[..., None].expand(-1, -1, p))
        torch.testing.assert_close(out["pred"], hidden, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out["loss"], official_loss(preds, xb_patch, mask), rtol=1e-4, atol=1e-6)


def test_patchtst_zeroes_only_the_hidden_patches_and_sees_them_all():
    torch.manual_seed(0)
    enc = PatchTSTEncoder(token_dim=4, dim=8, depth=1, num_heads=2, d_ff=16, pos_embed=partial(LearnedPosEmbed))
    enc.eval()
    values = torch.randn(2, 6, 4)
    tokens = Tokens(values=values, pos=torch.arange(6.0).reshape(1, 6, 1), grid=(6,))
    mask = RandomMasker(ratio=0.5)(tokens, torch.Generator().manual_seed(0))
    hidden = mask.hidden_bool()
    out = enc(tokens, mask)
    assert out.shape == (2, 6, 8)  # every patch, hidden ones included
    edited = values.clone()
    edited[hidden] += 100.0  # the hidden values do not matter: they are zeroed
    torch.testing.assert_close(enc(Tokens(values=edited, pos=tokens.pos, grid=(6,)), mask), out)
    edited = values.clone()
    edited[~hidden] += 1.0  # the visible ones do
    assert not torch.allclose(enc(Tokens(values=edited, pos=tokens.pos, grid=(6,)), mask), out)
    assert enc.pool(tokens).shape == (2, 8)


def test_patchtst_bad_options_name_the_key():
    make = partial(PatchTSTEncoder, token_dim=4, dim=8, depth=1, num_heads=2, d_ff=16,
                   pos_embed=partial(LearnedPosEmbed))
    with pytest.raises(ValueError, match="model.encoder.activation"):
        make(activation="swish")
    with pytest.raises(ValueError, match="model.encoder.norm"):
        make(norm="batch")
    with pytest.raises(ValueError, match="model.encoder.dropout"):
        make(dropout=1.2)
    with pytest.raises(ValueError, match="model.encoder.dim=8 is not divisible by model.encoder.num_heads=3"):
        make(num_heads=3)
    with pytest.raises(ValueError, match="model.encoder.pool"):
        make(pool="cls")


# ----------------------------------------------------------------------------------- the recipes, composed
def test_patchtst_etth1_recipe_has_the_official_values(tmp_path):
    cfg = compose_cfg(["experiment=patchtst_etth1", "data.root=/data/ETTh1.csv"], tmp_path)
    validate(cfg)
    resolved = describe(resolve_batch(cfg), blr=float(cfg.optim.blr), lr=cfg.optim.lr)
    assert resolved["lr"] == pytest.approx(1e-4) and resolved["effective_batch"] == 64  # --lr, --batch_size
    assert cfg.trainer.max_epochs == 10 and cfg.optim.schedule == "one_cycle"  # --n_epochs_pretrain, fit_one_cycle
    assert (cfg.optim.warmup_epochs, cfg.optim.min_lr) == (0, 0.0)  # one_cycle's own warm-up and end
    assert cfg.optim.weight_decay == 0.0 and list(cfg.optim.optimizer.betas) == [0.9, 0.999]  # Adam
    assert cfg.trainer.gradient_clip_val is None and cfg.mask.ratio == 0.4
    assert (cfg.data.context, cfg.tokenizer.patch_len, cfg.data.batch_size) == (512, 12, 64)
    enc = cfg.model.encoder
    assert enc._target_ == "mae.modalities.timeseries.encoder.PatchTSTEncoder"
    assert (enc.dim, enc.depth, enc.num_heads, enc.d_ff, enc.dropout, enc.attn_dropout) == (128, 3, 16, 512, 0.2, 0.0)
    assert (enc.activation, enc.norm, enc.pre_norm, enc.res_attention) == ("relu", "BatchNorm", False, False)
    assert cfg.model.decoder._target_ == "mae.core.linear_decoder.LinearDecoder" and cfg.model.decoder.dropout == 0.2
    module = instantiate(cfg.module)
    assert isinstance(module.encoder, PatchTSTEncoder) and isinstance(module.decoder, LinearDecoder)
    assert module.decoder.head.in_features == 128 and module.decoder.head.out_features == 12  # Linear(d_model, patch_len)
    assert isinstance(module.encoder.pos_embed, LearnedPosEmbed) and 512 // 12 <= module.encoder.pos_embed.max_len
    official = OfficialPatchTST(num_patch=42, patch_len=12, n_layers=3, d_model=128, n_heads=16, d_ff=512,
                                norm="BatchNorm", dropout=0.2, act="relu", res_attention=False, pre_norm=False,
                                head_dropout=0.2)  # get_model(c_in, args) of patchtst_pretrain.py at its defaults
    trainable = sum(p.numel() for p in official.parameters() if p.requires_grad)  # as the script prints it
    ours = sum(p.numel() for p in module.parameters())
    assert ours == trainable + (module.encoder.pos_embed.max_len - 42) * 128  # W_pos: 128 rows here, 42 used


def test_patchtst_etth1_finetune_recipe(tmp_path):
    cfg = compose_cfg(["experiment=patchtst_etth1_finetune", "data.root=/data/ETTh1.csv", "pretrained=/runs/pre"],
                      tmp_path)
    ft = cfg.finetune
    assert (ft.epochs, ft.freeze_epochs, ft.head.dropout) == (30, 10, 0.2)  # 10 head-only + 20, --head_dropout
    assert (ft.optim.lr, ft.optim.weight_decay) == (1e-4, 0.0) and ft.optim.optimizer._target_ == "torch.optim.Adam"
    assert (cfg.data.context, list(cfg.data.horizons), cfg.data.batch_size) == (512, [96], 64)


def test_models_compose_for_the_modality(tmp_path):
    """modality=timeseries runs PatchTST's network; model=patchtst_mae keeps the MAE-style variant."""
    cfg = compose_cfg(["modality=timeseries"], tmp_path)
    assert cfg.model.encoder._target_.endswith("PatchTSTEncoder")
    mae_style = compose_cfg(["modality=timeseries", "model=patchtst_mae"], tmp_path)
    assert mae_style.model.encoder._target_ == "mae.core.encoder.Encoder"
    assert mae_style.model.decoder._target_ == "mae.core.decoder.Decoder"


def test_recipe_files_cite_the_official_code():
    for name in ("conf/experiment/patchtst_etth1.yaml", "conf/model/patchtst.yaml"):
        text = (ROOT / name).read_text()
        assert "as remembered" not in text and "patchtst_pretrain.py" in text, name


# ----------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("model", ["patchtst", "patchtst_mae"])
def test_train_py_tiny_run_with_the_probes(model, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "modality=timeseries", f"model={model}", "debug=fast",
                           "logger=csv", "data.name=GunPoint", "eval.raw_input=false", f"run_dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("train/loss", "val/loss", "eval/linear_acc", "eval/knn_acc", "eval/linear_acc_random_init"):
        assert np.isfinite(metrics[key]), key
