"""Point clouds: FPS / kNN / grouping, Chamfer, masks on groups, the tokenizer, PointNet embedding,
max_mean pooling and the datamodule's file formats and bad-input handling."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from datamodules.errors import LoadError
from datamodules.pointcloud.datamodule import PointCloudDataModule
from datamodules.pointcloud.io import clean_points, normalize_unit_sphere, read_points, resample
from datamodules.pointcloud.shapes import SHAPES, synthetic_clouds
from mae.core.encoder import Encoder
from mae.core.masking import BlockMasker, RandomMasker
from mae.core.pos_embed import MLPPosEmbed
from mae.core.tokens import Tokens
from mae.modalities.pointcloud.embed import PointNetEmbed
from mae.modalities.pointcloud.losses import chamfer_distance, masked_chamfer
from mae.modalities.pointcloud.ops import fps, group_points, knn
from mae.modalities.pointcloud.tokenizer import PointCloudTokenizer


def fps_reference(points: torch.Tensor, num: int) -> list[int]:
    """Plain loop FPS for one cloud (N, 3), starting at 0."""
    chosen = [0]
    for _ in range(num - 1):
        d = torch.stack([((points - points[c]) ** 2).sum(-1) for c in chosen]).amin(0)
        chosen.append(int(d.argmax()))
    return chosen


def test_fps_matches_reference_loop_and_is_max_min():
    pts = torch.rand(3, 200, 3, generator=torch.Generator().manual_seed(0))
    idx = fps(pts, 16)
    assert idx.shape == (3, 16)
    for b in range(3):
        assert idx[b].tolist() == fps_reference(pts[b], 16)
        assert len(set(idx[b].tolist())) == 16
        # greedy max-min: each pick is (one of) the farthest from the ones before it
        for i in range(1, 16):
            d = torch.cdist(pts[b], pts[b, idx[b, :i]]).amin(1)
            assert d[idx[b, i]] == pytest.approx(d.max().item())
    assert torch.equal(fps(pts, 16), idx)  # deterministic


def test_fps_spreads_points_better_than_random():
    pts = torch.rand(1, 2000, 3, generator=torch.Generator().manual_seed(1))
    sel = pts[0, fps(pts, 32)[0]]
    rnd = pts[0, torch.randperm(2000, generator=torch.Generator().manual_seed(2))[:32]]
    min_gap = lambda x: (torch.cdist(x, x) + torch.eye(32) * 9).min()  # noqa: E731
    assert min_gap(sel) > 2 * min_gap(rnd)


def test_knn_finds_the_nearest_points():
    g = torch.Generator().manual_seed(3)
    pts, q = torch.rand(2, 100, 3, generator=g), torch.rand(2, 5, 3, generator=g)
    idx = knn(q, pts, 7)
    for b in range(2):
        for j in range(5):
            d = ((pts[b] - q[b, j]) ** 2).sum(-1)
            assert set(idx[b, j].tolist()) == set(d.argsort()[:7].tolist())


def test_group_points_relative_to_centres():
    pts = torch.rand(2, 256, 3, generator=torch.Generator().manual_seed(4))
    groups, centres = group_points(pts, 8, 16)
    assert groups.shape == (2, 8, 16, 3) and centres.shape == (2, 8, 3)
    assert torch.allclose(groups[:, :, 0], torch.zeros(2, 8, 3))  # each centre is its own nearest point
    absolute = groups + centres[:, :, None]
    for b in range(2):  # every grouped point is a point of the cloud
        assert ((absolute[b].reshape(-1, 1, 3) - pts[b]).abs().sum(-1).amin(1) < 1e-6).all()


def test_chamfer_matches_brute_force_and_is_zero_for_identical_sets():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(4, 10, 3, generator=g), torch.randn(4, 13, 3, generator=g)
    for k in range(4):
        d = [[float(((x - y) ** 2).sum()) for y in b[k]] for x in a[k]]
        ab = np.mean([min(row) for row in d])
        ba = np.mean([min(d[i][j] for i in range(10)) for j in range(13)])
        assert chamfer_distance(a[k], b[k]).item() == pytest.approx(ab + ba, rel=1e-5)
        l1 = (np.mean([np.sqrt(min(row)) for row in d]) + np.mean([np.sqrt(min(d[i][j] for i in range(10)))
                                                                 for j in range(13)])) / 2
        assert chamfer_distance(a[k], b[k], norm=1).item() == pytest.approx(l1, rel=1e-5)
    perm = a[:, torch.randperm(10)]
    assert chamfer_distance(a, perm).abs().max() < 1e-6
    pred = a.reshape(4, 1, 30).expand(4, 2, 30)
    assert masked_chamfer(pred, pred).item() == pytest.approx(0.0, abs=1e-7)
    assert masked_chamfer(pred, pred[:, :, torch.randperm(30)].contiguous()).item() > 0  # coordinates shuffled


def test_masks_on_groups_are_exact():
    pos = torch.rand(4, 64, 3)
    tokens = Tokens(values=torch.randn(4, 64, 96), pos=pos)
    for masker in (RandomMasker(ratio=0.6), BlockMasker(ratio=0.6, num_blocks=1)):
        m = masker(tokens, torch.Generator().manual_seed(0))
        assert m.keep.shape == (4, 25) and m.masked.shape == (4, 39)
        assert torch.equal(m.shuffle.gather(1, m.restore), torch.arange(64).expand(4, -1))
        m2 = masker(tokens, torch.Generator().manual_seed(0))
        assert torch.equal(m.masked, m2.masked)  # deterministic under a seed


def test_tokenizer_embed_and_max_mean_pool():
    tok = PointCloudTokenizer(num_groups=8, group_size=16)
    batch = {"points": torch.rand(2, 128, 3)}
    tokens = tok(batch)
    assert tokens.values.shape == (2, 8, 48) and tokens.pos.shape == (2, 8, 3) and tokens.grid is None
    enc = Encoder(token_dim=tok.token_dim, dim=32, depth=1, num_heads=2, cls_token=False, pool="max_mean",
                  pos_embed=MLPPosEmbed, token_embed=PointNetEmbed).eval()
    feats = enc.pool(tokens)
    assert feats.shape == (2, 64) and enc.pool_dim == 64
    x = enc(tokens)
    torch.testing.assert_close(feats, torch.cat([x.amax(1), x.mean(1)], -1))
    with pytest.raises(ValueError, match="num_groups"):
        tok({"points": torch.rand(2, 4, 3)})


def test_synthetic_shapes_are_labelled_and_deterministic():
    x, y = synthetic_clouds(12, num_points=256, seed=0)
    x2, y2 = synthetic_clouds(12, num_points=256, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (12, 256, 3) and sorted(y.tolist()) == sorted(list(range(len(SHAPES))) * 2)
    assert torch.isfinite(x).all()


def test_clean_resample_normalize():
    pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [float("nan"), 0, 0], [0, float("inf"), 0]])
    c = clean_points(pts)
    assert c.shape == (2, 3)
    r = resample(c, 10)  # fewer points than needed: with replacement, every point kept
    assert r.shape == (10, 3) and {tuple(p) for p in r.tolist()} == {(0.0, 0.0, 0.0), (1.0, 0.0, 0.0)}
    n = normalize_unit_sphere(torch.rand(50, 3) * 7 + 3)
    assert n.norm(dim=1).max() == pytest.approx(1.0) and n.mean(0).abs().max() < 1e-5
    with pytest.raises(ValueError, match="degenerate"):
        clean_points(torch.ones(5, 3))
    with pytest.raises(ValueError, match="no finite"):
        clean_points(torch.full((5, 3), float("nan")))


def write_modelnet(root, *, bad: bool = True):
    """Two classes of every supported format, plus bad files."""
    import trimesh

    rng = np.random.default_rng(0)
    for cls in ("box", "ball"):
        d = root / cls
        d.mkdir(parents=True)
        mesh = trimesh.creation.box() if cls == "box" else trimesh.creation.icosphere(subdivisions=2)
        for ext in (".off", ".obj", ".stl", ".ply"):
            mesh.export(d / f"mesh{ext}")
        pts = rng.normal(size=(300, 3))
        np.save(d / "a.npy", pts)
        np.savez(d / "b.npz", points=pts)
        np.savetxt(d / "c.txt", np.hstack([pts, pts]), delimiter=",")  # ModelNet normal-resampled: x,y,z,nx,ny,nz
        np.savetxt(d / "d.xyz", pts[:20])  # fewer points than num_points
    if bad:
        (root / "box" / "empty.txt").write_text("")
        np.save(root / "box" / "same.npy", np.ones((50, 3)))
        np.save(root / "ball" / "nan.npy", np.full((50, 3), np.nan))
        (root / "ball" / "broken.off").write_text("OFF\n3 1 0\n0 0 0\n")  # truncated mesh


def test_folder_reads_every_format_and_skips_bad_files(tmp_path):
    write_modelnet(tmp_path)
    for f in ["box/mesh.off", "box/mesh.obj", "box/mesh.stl", "box/mesh.ply", "box/a.npy", "box/b.npz",
              "box/c.txt", "box/d.xyz"]:
        pts = clean_points(read_points(tmp_path / f, num_points=128))
        assert pts.shape[1] == 3 and len(pts) >= 8, f
    dm = PointCloudDataModule(root=str(tmp_path), num_points=128, batch_size=4, val_fraction=0.25)
    with pytest.warns(UserWarning, match="skipping"):
        dm.setup()
    assert dm.classes == ["ball", "box"] and dm.skips.count == 4
    assert {p.split("/")[-1] for p, _ in dm.skips.skipped} == {"empty.txt", "same.npy", "nan.npy", "broken.off"}
    batch = next(iter(dm.train_dataloader()))
    assert batch["points"].shape == (4, 128, 3) and torch.isfinite(batch["points"]).all()
    val = next(iter(dm.val_dataloader()))["points"]
    assert val.norm(dim=-1).amax(1).sub(1).abs().max() < 1e-5  # unit sphere, no augmentation
    assert torch.equal(val, next(iter(dm.val_dataloader()))["points"])  # deterministic subsample


def test_on_error_raise_and_all_files_failing(tmp_path):
    write_modelnet(tmp_path / "a")
    dm = PointCloudDataModule(root=str(tmp_path / "a"), num_points=64, batch_size=2, on_error="raise")
    with pytest.raises(LoadError):
        dm.setup()
    bad = tmp_path / "b" / "only"
    bad.mkdir(parents=True)
    np.save(bad / "x.npy", np.ones((10, 3)))
    (bad / "y.off").write_text("not a mesh")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="all 2 files"):
            PointCloudDataModule(root=str(tmp_path / "b"), num_points=64).setup()


def test_csv_list_and_source_checks(tmp_path):
    write_modelnet(tmp_path / "d", bad=False)
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\nd/box/a.npy,box\nd/ball/a.npy,ball\nd/box/mesh.off,box\nd/ball/c.txt,ball\n")
    dm = PointCloudDataModule(list=str(csv), num_points=64, batch_size=2, val_fraction=0.5)
    dm.setup()
    assert dm.classes == ["ball", "box"] and len(dm.train_set) == 2
    with pytest.raises(ValueError, match="only read by"):
        PointCloudDataModule(source="shapes", root=str(tmp_path))
    with pytest.raises(TypeError, match="data.aug_rotate"):
        PointCloudDataModule(aug_rotate="False")


def test_shapes_source_train_batches_are_seeded_and_augmented():
    def first(seed: int) -> torch.Tensor:
        dm = PointCloudDataModule(num_points=128, batch_size=4, synthetic_size=12, seed=seed,
                                  aug_rotate=True, aug_jitter=0.01)
        dm.setup()
        return next(iter(dm.train_dataloader()))["points"]

    a, b = first(0), first(0)
    assert torch.equal(a, b) and not torch.equal(a, first(1))
    assert a.shape == (4, 128, 3) and a.norm(dim=-1).amax() > 1.01  # scaled / translated beyond the unit sphere


def test_mesh_cache_is_used_and_invalidated_when_the_file_changes(tmp_path, monkeypatch):
    import trimesh

    import datamodules.pointcloud.io as pc

    root, cache = tmp_path / "data", tmp_path / "cache"
    for cls, mesh in (("box", trimesh.creation.box()), ("ball", trimesh.creation.icosphere(subdivisions=2))):
        (root / cls).mkdir(parents=True)
        mesh.export(root / cls / "m.off")
    calls: list[str] = []
    real = pc.read_points
    monkeypatch.setattr(pc, "read_points", lambda path, **kw: calls.append(path.name) or real(path, **kw))

    def make(cache_dir) -> PointCloudDataModule:
        dm = PointCloudDataModule(root=str(root), num_points=64, batch_size=1, val_fraction=0.5,
                                  cache_dir=cache_dir, **({"mesh_points": 500} if cache_dir else {}))
        dm.setup()
        return dm

    dm = make(str(cache))
    assert len(calls) == 2  # the pre-scan sampled each mesh once and stored it
    entries = sorted(cache.glob("v*/*.npy"))
    assert len(entries) == 2 and all(np.load(e).shape == (500, 3) for e in entries)
    first = dm.train_set[(1, 0)]["points"]
    for key in [(2, 0), (3, 0), 0]:
        dm.train_set[key], dm.val_set[key if isinstance(key, int) else 0]
    assert len(calls) == 2  # every later load read the cache
    assert first.shape == (64, 3) and not torch.equal(first, dm.train_set[(2, 0)]["points"])  # a new subset per seed
    make(str(cache))
    assert len(calls) == 2  # a new datamodule (another process) reuses the entries
    trimesh.creation.box(extents=(2.0, 1.0, 0.5)).export(root / "box" / "m.off")  # the file changes
    make(str(cache))
    assert len(calls) == 3 and len(list(cache.glob("v*/*.npy"))) == 3  # only the changed file is sampled again
    box = pc.read_points_cached(root / "box" / "m.off", num_points=64, seed=0, cache_dir=cache, mesh_points=500)
    assert len(calls) == 3 and np.ptp(box, axis=0) == pytest.approx([2.0, 1.0, 0.5], abs=0.05)  # the new box
    nocache = make(None)
    before = len(calls)
    nocache.train_set[(1, 0)]
    assert len(calls) == before + 1  # without a cache a mesh is sampled at every load


def test_pos_every_block_adds_positions_before_each_block():
    from mae.core.decoder import Decoder
    from mae.core.tokens import Mask

    torch.manual_seed(0)
    tokens = Tokens(values=torch.randn(2, 6, 12), pos=torch.randn(2, 6, 3))
    for cls in (True, False):
        enc = Encoder(token_dim=12, dim=16, depth=2, num_heads=2, cls_token=cls, pos_embed=MLPPosEmbed,
                      pos_every_block=True).eval()
        pe = enc.pos_embed(tokens.pos)  # (B, N, D)
        x = enc.embed(tokens.values)
        if cls:
            x = torch.cat([enc.cls_token.expand(2, -1, -1), x], 1)
            pe = torch.cat([torch.zeros(2, 1, 16), pe], 1)
        for block in enc.blocks:
            x = block(x + pe)
        torch.testing.assert_close(enc(tokens), enc.norm(x))
        once = Encoder(token_dim=12, dim=16, depth=2, num_heads=2, cls_token=cls, pos_embed=MLPPosEmbed)
        once.load_state_dict(enc.state_dict())
        assert not torch.allclose(once.eval()(tokens), enc(tokens))  # the flag changes the computation
    keep, masked = torch.tensor([[0, 2], [5, 1]]), torch.tensor([[1, 3, 4, 5], [0, 2, 3, 4]])
    mask = Mask(keep=keep, masked=masked, restore=torch.cat([keep, masked], 1).argsort(1))
    dec = Decoder(enc_dim=16, num_prefix=0, out_dim=12, dim=16, depth=2, num_heads=2, pos_embed=MLPPosEmbed,
                  pos_every_block=True).eval()
    latent = torch.randn(2, 2, 16)
    x = torch.cat([dec.embed(latent), dec.mask_token.expand(2, 4, -1)], 1).gather(
        1, mask.restore[..., None].expand(-1, -1, 16))  # (B, N, Dd) original order
    pe = dec.pos_embed(tokens.pos)
    for block in dec.blocks:
        x = block(x + pe)
    expected = dec.head(dec.norm(x).gather(1, masked[..., None].expand(-1, -1, 16)))
    torch.testing.assert_close(dec(latent, tokens, mask), expected)
    with pytest.raises(TypeError, match="pos_every_block"):
        Encoder(token_dim=12, dim=16, depth=1, num_heads=2, pos_embed=MLPPosEmbed, pos_every_block="true")


def test_pointnet_widths():
    emb = PointNetEmbed(in_dim=48, dim=24, widths=(8, 16, 32))
    assert emb(torch.randn(2, 5, 48)).shape == (2, 5, 24)
    assert emb.first[0].out_features == 8 and emb.second[0].in_features == 32 and emb.second[0].out_features == 32
    with pytest.raises(ValueError, match="widths"):
        PointNetEmbed(in_dim=48, dim=24, widths=(8, 16))


def test_synthetic_rotation_upright_keeps_the_shapes_axis_on_up_axis():
    def cross_cov(rotation: str) -> torch.Tensor:  # |cov(up, other axes)| per cloud, (12, 2)
        x, _ = synthetic_clouds(12, num_points=2048, seed=0, rotation=rotation, up_axis=1)
        x = x - x.mean(1, keepdim=True)
        return (x.transpose(1, 2) @ x / x.shape[1])[:, 1, [0, 2]].abs()

    assert cross_cov("upright").max() < 0.03  # mirror-symmetric shapes turned about y only: y stays a principal axis
    assert cross_cov("any").max() > 0.1
    with pytest.raises(ValueError, match="synthetic_rotation"):
        PointCloudDataModule(synthetic_rotation="tilted")
