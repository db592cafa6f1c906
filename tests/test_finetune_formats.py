"""Foreign checkpoints -> our Encoder: the same features as the source model (float tolerance), made in the test from
randomly initialised timm / transformers models; strict key checks; positional tables and their interpolation."""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import torch

from mae.core.encoder import Encoder
from mae.core.pos_embed import GridTablePosEmbed, SinCosPosEmbed, interpolate_grid_table, sinusoid_1d_table
from mae.finetune.formats import detect_format, import_encoder
from mae.finetune.load import install_pos_table, load_encoder_strict
from mae.modalities.image.tokenizer import ImageTokenizer
from mae.modalities.video.tokenizer import VideoTokenizer

D, DEPTH, HEADS = 32, 2, 2


def our_encoder(token_dim: int, imported, *, grid, pool: str = "mean", cls_token: bool = True) -> Encoder:
    kwargs = {k: v for k, v in imported.encoder_kwargs.items() if k in ("norm_eps", "pos_every_block")}
    encoder = Encoder(token_dim=token_dim, dim=D, depth=DEPTH, num_heads=HEADS, pool=pool, cls_token=cls_token,
                      pos_embed=partial(SinCosPosEmbed), **kwargs)
    load_encoder_strict(encoder, imported.state, source=imported.source)
    table = imported.pos_table
    if imported.sinusoid_1d:
        table = sinusoid_1d_table(math.prod(grid), D)
    install_pos_table(encoder, table, imported.grid or grid, grid, trainable=imported.pos_trainable)
    return encoder.eval()


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_official_mae_timm_pth_gives_the_same_features(tmp_path, pool):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    timm_vit = VisionTransformer(img_size=16, patch_size=8, in_chans=3, num_classes=0, embed_dim=D, depth=DEPTH,
                                 num_heads=HEADS, global_pool=pool, fc_norm=pool == "avg", class_token=True).eval()
    with torch.no_grad():
        timm_vit.pos_embed.normal_()  # a fine-tuned (learned) table with a nonzero cls row: the fold must be right
        if pool == "avg":
            timm_vit.fc_norm.weight.uniform_(0.5, 1.5)
    path = tmp_path / "mae.pth"
    torch.save({"model": timm_vit.state_dict()}, path)
    assert detect_format(path) == "pth"
    imported = import_encoder(path)
    assert imported.encoder_kwargs["depth"] == DEPTH and imported.tokenizer_kwargs == {"patch_size": 8, "channels": 3}
    tokenizer = ImageTokenizer(image_size=16, channels=3, patch_size=8)
    ours = our_encoder(tokenizer.token_dim, imported, grid=tokenizer.grid, pool="mean" if pool == "avg" else "cls")
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = timm_vit.forward_head(timm_vit.forward_features(x), pre_logits=True)
        got = ours.pool(tokenizer({"image": x}))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_mae_pretrain_checkpoint_drops_the_decoder_and_names_unknown_keys(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    state = VisionTransformer(img_size=16, patch_size=8, num_classes=0, embed_dim=D, depth=DEPTH,
                              num_heads=HEADS).state_dict()
    state |= {"decoder_embed.weight": torch.zeros(4, D), "mask_token": torch.zeros(1, 1, 4)}
    torch.save({"model": state}, tmp_path / "pre.pth")
    assert {"decoder_embed.weight", "mask_token"} <= set(import_encoder(tmp_path / "pre.pth").ignored)
    state["blocks.0.ls1.gamma"] = torch.ones(D)  # layer scale: our blocks have none
    torch.save({"model": state}, tmp_path / "ls.pth")
    imported = import_encoder(tmp_path / "ls.pth")
    encoder = Encoder(token_dim=3 * 64, dim=D, depth=DEPTH, num_heads=HEADS, pos_embed=partial(SinCosPosEmbed))
    with pytest.raises(ValueError, match=r"not in this encoder: blocks\.0\.ls1\.gamma"):
        load_encoder_strict(encoder, imported.state, source=imported.source)


def test_hf_vitmae_directory_gives_the_same_tokens(tmp_path):
    from transformers import ViTMAEConfig, ViTMAEModel

    torch.manual_seed(0)
    config = ViTMAEConfig(hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=4 * D,
                          image_size=16, patch_size=8, num_channels=3, mask_ratio=0.0)
    hf = ViTMAEModel(config).eval()
    hf.save_pretrained(tmp_path)
    assert detect_format(tmp_path) == "hf_dir"
    imported = import_encoder(tmp_path)
    assert imported.encoder_kwargs["num_heads"] == HEADS and imported.encoder_kwargs["norm_eps"] == 1e-12
    tokenizer = ImageTokenizer(image_size=16, channels=3, patch_size=8)
    ours = our_encoder(tokenizer.token_dim, imported, grid=tokenizer.grid)
    x = torch.randn(2, 3, 16, 16)
    noise = torch.arange(4.0).expand(2, 4)  # ascending noise: HF keeps the tokens in their order at ratio 0
    with torch.no_grad():
        expected = hf(pixel_values=x, noise=noise).last_hidden_state  # (B, 1+N, D), after the final layernorm
        got = ours(tokenizer({"image": x}))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def hf_videomae(tmp_path: Path):
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    config = VideoMAEConfig(hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
                            intermediate_size=4 * D, image_size=16, patch_size=8, num_channels=3, num_frames=4,
                            tubelet_size=2, use_mean_pooling=False)
    hf = VideoMAEModel(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(("query.bias", "value.bias", "q_bias", "v_bias")):
                p.normal_()  # nonzero q / v biases: silently dropping them would change the features
    hf.save_pretrained(tmp_path)
    return hf


def test_hf_videomae_directory_gives_the_same_tokens(tmp_path):
    hf = hf_videomae(tmp_path)
    imported = import_encoder(tmp_path)
    tokenizer = VideoTokenizer(num_frames=4, image_size=16, tubelet_size=2, patch_size=8)
    assert imported.grid == tokenizer.grid
    ours = our_encoder(tokenizer.token_dim, imported, grid=tokenizer.grid, cls_token=False)
    x = torch.randn(2, 3, 4, 16, 16)  # ours (B, C, T, H, W); HF takes (B, T, C, H, W)
    with torch.no_grad():
        expected = hf(pixel_values=x.transpose(1, 2)).last_hidden_state
        got = ours(tokenizer({"video": x}))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_hf_videomae_without_its_q_v_biases_is_an_error_not_zeros(tmp_path):
    from safetensors.torch import load_file, save_file

    hf_videomae(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = {k: v for k, v in load_file(str(weights)).items()
             if not k.endswith(("query.bias", "value.bias", "q_bias", "v_bias"))}
    save_file(state, str(weights))
    with pytest.raises(ValueError, match="q bias.*trap"):
        import_encoder(tmp_path)


def test_official_videomae_pth_gives_the_same_tokens(tmp_path):
    hf = hf_videomae(tmp_path / "hf")
    hf_state = hf.state_dict()
    official = {"encoder.patch_embed.proj.weight": hf_state["embeddings.patch_embeddings.projection.weight"],
                "encoder.patch_embed.proj.bias": hf_state["embeddings.patch_embeddings.projection.bias"],
                "encoder.norm.weight": hf_state["layernorm.weight"], "encoder.norm.bias": hf_state["layernorm.bias"],
                "decoder.head.weight": torch.zeros(3, D), "mask_token": torch.zeros(1, 1, D)}
    for i in range(DEPTH):
        hf_b, b = f"encoder.layer.{i}.", f"encoder.blocks.{i}."
        att = hf_b + "attention.attention."
        bias = lambda part: hf_state.get(f"{att}{part}.bias", hf_state.get(f"{att}{part[0]}_bias"))  # noqa: E731
        official |= {
            b + "attn.qkv.weight": torch.cat([hf_state[f"{att}{p}.weight"] for p in ("query", "key", "value")]),
            b + "attn.q_bias": bias("query"), b + "attn.v_bias": bias("value"),
            b + "attn.proj.weight": hf_state[hf_b + "attention.output.dense.weight"],
            b + "attn.proj.bias": hf_state[hf_b + "attention.output.dense.bias"],
            b + "norm1.weight": hf_state[hf_b + "layernorm_before.weight"],
            b + "norm1.bias": hf_state[hf_b + "layernorm_before.bias"],
            b + "norm2.weight": hf_state[hf_b + "layernorm_after.weight"],
            b + "norm2.bias": hf_state[hf_b + "layernorm_after.bias"],
            b + "mlp.fc1.weight": hf_state[hf_b + "intermediate.dense.weight"],
            b + "mlp.fc1.bias": hf_state[hf_b + "intermediate.dense.bias"],
            b + "mlp.fc2.weight": hf_state[hf_b + "output.dense.weight"],
            b + "mlp.fc2.bias": hf_state[hf_b + "output.dense.bias"],
        }
    torch.save({"model": official}, tmp_path / "videomae.pth")
    imported = import_encoder(tmp_path / "videomae.pth")
    assert imported.sinusoid_1d and imported.tokenizer_kwargs["tubelet_size"] == 2
    tokenizer = VideoTokenizer(num_frames=4, image_size=16, tubelet_size=2, patch_size=8)
    ours = our_encoder(tokenizer.token_dim, imported, grid=tokenizer.grid, cls_token=False)
    x = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(tokenizer({"video": x})), hf(pixel_values=x.transpose(1, 2)).last_hidden_state,
                                   atol=1e-5, rtol=1e-5)
    del official["encoder.blocks.1.attn.v_bias"]
    torch.save({"model": official}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="blocks.1.attn.v_bias"):
        import_encoder(tmp_path / "broken.pth")


def test_pointmae_pretrain_pth_maps_onto_our_encoder(tmp_path):
    from mae.core.pos_embed import MLPPosEmbed
    from mae.modalities.pointcloud.embed import PointNetEmbed

    ours = Encoder(token_dim=8 * 3, dim=D, depth=DEPTH, num_heads=HEADS, cls_token=False, pool="max_mean",
                   pos_every_block=True, norm_eps=1e-5, pos_embed=partial(MLPPosEmbed, in_dim=3),
                   token_embed=partial(PointNetEmbed))
    official = {}
    for k, v in ours.state_dict().items():  # Point-MAE's names for the same tensors (Conv1d k=1 = Linear)
        name = k.replace("embed.first.", "MAE_encoder.encoder.first_conv.").replace(
            "embed.second.", "MAE_encoder.encoder.second_conv.").replace("pos_embed.mlp.", "MAE_encoder.pos_embed.")
        name = name.replace("blocks.", "MAE_encoder.blocks.blocks.") if name.startswith("blocks.") else name
        name = "MAE_encoder.norm." + name.split(".")[-1] if name.startswith("norm.") else name
        if name.endswith("attn.qkv.bias"):
            continue  # Point-MAE's attention has no qkv bias
        official[name] = v.unsqueeze(-1) if "_conv." in name and v.ndim == 2 else v
    official["MAE_decoder.norm.weight"] = torch.ones(D)
    torch.save({"base_model": official}, tmp_path / "pointmae.pth")
    imported = import_encoder(tmp_path / "pointmae.pth")
    assert imported.encoder_kwargs["norm_eps"] == 1e-5 and "MAE_decoder.norm.weight" in imported.ignored
    twin = Encoder(token_dim=8 * 3, dim=D, depth=DEPTH, num_heads=HEADS, cls_token=False, pool="max_mean",
                   pos_every_block=True, norm_eps=1e-5, pos_embed=partial(MLPPosEmbed, in_dim=3),
                   token_embed=partial(PointNetEmbed))
    with torch.no_grad():
        for p in ours.parameters():
            if p.ndim == 1 and p.shape[0] == 3 * D:  # the zero qkv bias of Point-MAE
                p.zero_()
    load_encoder_strict(twin, imported.state, source="pointmae")
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(twin.state_dict()[k], v)


def test_interpolation_of_positional_tables():
    table = torch.randn(1, 12, 4)
    assert torch.equal(interpolate_grid_table(table, (3, 4), (3, 4)), table)
    ramp = torch.arange(4.0).repeat(4)[None, :, None].expand(1, 16, 2)  # (1, 4x4, 2): value = column index
    up = interpolate_grid_table(ramp, (4, 4), (8, 8)).reshape(8, 8, 2)[..., 0]
    assert torch.allclose(up[0], up[5]) and bool((up[:, 1:] >= up[:, :-1] - 1e-5).all())  # still a column ramp
    assert interpolate_grid_table(torch.randn(1, 6, 3), (6,), (9,)).shape == (1, 9, 3)
    assert interpolate_grid_table(torch.randn(1, 2 * 3 * 3, 3), (2, 3, 3), (4, 4, 4)).shape == (1, 64, 3)


def test_grid_table_looks_up_by_coordinates():
    table = torch.arange(6.0).reshape(1, 6, 1)
    embed = GridTablePosEmbed(table=table, grid=(2, 3), trainable=False)
    pos = torch.tensor([[[1.0, 2.0], [0.0, 1.0]]])  # (row, col) -> flat 5, 1
    assert embed(pos).flatten().tolist() == [5.0, 1.0] and not embed.table.requires_grad


def test_sinusoid_1d_table_is_videomae_formula():
    t = sinusoid_1d_table(5, 4)[0]
    assert t[3, 0] == pytest.approx(math.sin(3)) and t[3, 1] == pytest.approx(math.cos(3))
    assert t[3, 2] == pytest.approx(math.sin(3 / 10000 ** (2 / 4)))


def test_strict_load_names_what_differs():
    enc = Encoder(token_dim=12, dim=D, depth=2, num_heads=HEADS, pos_embed=partial(SinCosPosEmbed))
    deeper = Encoder(token_dim=12, dim=D, depth=3, num_heads=HEADS, pos_embed=partial(SinCosPosEmbed)).state_dict()
    with pytest.raises(ValueError, match=r"not in this encoder: blocks\.2\.") as err:
        load_encoder_strict(enc, deeper, source="x")
    assert "depth 3" in str(err.value) and "model=" in str(err.value)
    wider = Encoder(token_dim=12, dim=48, depth=2, num_heads=HEADS, pos_embed=partial(SinCosPosEmbed)).state_dict()
    with pytest.raises(ValueError, match="shapes differ"):
        load_encoder_strict(enc, wider, source="x")
