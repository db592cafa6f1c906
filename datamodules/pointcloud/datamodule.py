"""Point clouds for Point-MAE: a ModelNet-style folder (one subfolder per class) of point files or meshes,
or generated labelled shapes (the default when no root is given, as MNIST is for images).

Every sample becomes `num_points` points normalised to the unit sphere (centroid at the origin, farthest
point at distance 1). Point files: .npy, .npz, .txt/.xyz (whitespace or comma separated; the first three
columns are x, y, z), .ply point clouds. Meshes (.off, .obj, .ply, .stl) are sampled uniformly on their
surface with trimesh. Bad input: non-finite rows are dropped, clouds with fewer points are resampled with
replacement; empty, degenerate (all points equal) and unreadable files are skipped with a warning and a
count (on_error="skip") or raise (on_error="raise"); every file failing is a clear error.
Mesh cache (cache_dir): a mesh is sampled once with `mesh_points` surface points, stored under
cache_dir/v<version>_<mesh_points>pts/<sha256 of the file>.npy, and each load draws `num_points` of them.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from datamodules.base import SplitDataModule
from datamodules.checks import check_bool, check_float, check_floats, check_int, check_optional_str
from datamodules.errors import FileSubset, LoadError, SkipCounter, check_on_error, verify_files
from datamodules.indexing import index_class_folder, read_list_csv, resolve_source, split_indices
from datamodules.sampling import SampleKey, seeded, split_key
from mae.core.seeding import mix_seed

POINT_EXTS = (".npy", ".npz", ".txt", ".xyz", ".ply", ".off", ".obj", ".stl")
MESH_EXTS = (".off", ".obj", ".ply", ".stl")
SOURCES = ("shapes", "folder")
SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid")


# ------------------------------------------------------------------------------------------- reading
def read_points(path: Path, *, num_points: int, seed: int = 0, mesh_points: int = 2048) -> np.ndarray:
    """(P, 3) float64 points of a file (a mesh is sampled with max(num_points, mesh_points) surface points)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            key = "points" if "points" in z.files else z.files[0] if z.files else None
            if key is None:
                raise ValueError("empty .npz archive")
            arr = z[key]
    elif suffix in (".txt", ".xyz"):
        text = path.read_text().replace(",", " ")
        arr = np.loadtxt(io.StringIO(text), ndmin=2) if text.strip() else np.zeros((0, 3))
    else:
        import trimesh

        loaded = trimesh.load(path, force=None)
        if isinstance(loaded, trimesh.Scene):
            loaded = loaded.to_geometry() if hasattr(loaded, "to_geometry") else loaded.dump(concatenate=True)
        if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) and loaded.area > 0:
            arr, _ = trimesh.sample.sample_surface(loaded, max(num_points, mesh_points), seed=seed)
        elif hasattr(loaded, "vertices"):  # a point cloud, or a mesh without area
            arr = np.asarray(loaded.vertices)
        else:
            raise ValueError(f"trimesh read a {type(loaded).__name__}, not a mesh or point cloud")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ValueError(f"expected an array of shape (P, >=3), got {arr.shape}")
    return arr[:, :3]


MESH_CACHE_VERSION = 1  # bump when the sampling changes: old entries are then never read


def mesh_cache_entry(path: Path, *, cache_dir: str | Path, mesh_points: int) -> tuple[Path, int]:
    """(cache file, sampling seed) of a mesh: cache_dir/v<version>_<mesh_points>pts/<sha256 of the file bytes>.npy.
    Keyed by content, so an edited file never reuses a stale entry; the seed comes from the same hash, so an
    entry's content does not depend on which process wrote it first."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    folder = Path(cache_dir).expanduser() / f"v{MESH_CACHE_VERSION}_{mesh_points}pts"
    return folder / f"{digest}.npy", int(digest[:8], 16)


def read_points_cached(path: Path, *, num_points: int, seed: int, cache_dir: str | Path | None,
                       mesh_points: int) -> np.ndarray:
    """read_points, except that a mesh (.off/.obj/.ply/.stl) with cache_dir set is sampled ONCE with
    max(num_points, mesh_points) surface points and stored as float32 .npy; later loads read the entry (the
    dataset then draws a random num_points subset per load). Point files and cache_dir=None read as before
    (meshes then re-sampled at every load). Written atomically (temp file + rename): safe with workers/ranks."""
    if cache_dir is None or path.suffix.lower() not in MESH_EXTS:
        return read_points(path, num_points=num_points, seed=seed)
    entry, mesh_seed = mesh_cache_entry(path, cache_dir=cache_dir, mesh_points=mesh_points)
    if entry.is_file():
        try:
            return np.load(entry, allow_pickle=False).astype(np.float64)
        except (OSError, ValueError):  # a truncated entry (killed writer): sample again and overwrite
            pass
    arr = read_points(path, num_points=num_points, seed=mesh_seed, mesh_points=mesh_points)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr.astype(np.float32))
    os.replace(tmp, entry)
    return arr


def clean_points(points: np.ndarray | Tensor) -> Tensor:
    """Drop non-finite rows; raise ValueError on an empty or degenerate (all points equal) cloud. -> (P, 3)."""
    x = torch.as_tensor(points, dtype=torch.float32)
    x = x[torch.isfinite(x).all(dim=1)]  # (P', 3)
    if len(x) == 0:
        raise ValueError("no finite points")
    if (x - x[0]).abs().max() < 1e-9:
        raise ValueError(f"degenerate cloud: all {len(x)} points are equal")
    return x


def resample(points: Tensor, num_points: int, generator: torch.Generator | None = None) -> Tensor:
    """(P, 3) -> (num_points, 3): a random subset, or with replacement (every point once first) if P is smaller."""
    p = len(points)
    if p >= num_points:
        return points[torch.randperm(p, generator=generator)[:num_points]]
    extra = torch.randint(0, p, (num_points - p,), generator=generator)
    return points[torch.cat([torch.randperm(p, generator=generator), extra])]


def normalize_unit_sphere(points: Tensor) -> Tensor:
    """(P, 3) -> centred on the centroid and scaled so that the farthest point is at distance 1."""
    x = points - points.mean(dim=0, keepdim=True)
    return x / x.norm(dim=1).max().clamp_min(1e-12)


# ------------------------------------------------------------------------------------ generated shapes
def shape_surface(kind: str, n: int, g: torch.Generator) -> Tensor:
    """n points on the surface of a canonical shape of size about 1, (n, 3)."""
    u, v = torch.rand(n, generator=g), torch.rand(n, generator=g)
    two_pi = 2 * math.pi
    if kind == "sphere":
        z, phi = 2 * u - 1, two_pi * v
        r = (1 - z**2).clamp_min(0).sqrt()
        return torch.stack([r * phi.cos(), r * phi.sin(), z], 1)
    if kind == "cube":
        face = torch.randint(0, 6, (n,), generator=g)
        p = torch.stack([2 * u - 1, 2 * v - 1, torch.where(face % 2 == 0, 1.0, -1.0)], 1)  # (n, 3): u, v, side
        columns = torch.tensor([[2, 0, 1], [0, 2, 1], [0, 1, 2]])  # fixed axis a gets the side column
        return p.gather(1, columns[face // 2])
    if kind == "cylinder":  # side + caps in proportion to their area (r = 0.6, h = 2)
        phi, side = two_pi * u, torch.rand(n, generator=g) < 0.77
        r = torch.where(side, torch.full((n,), 0.6), 0.6 * torch.rand(n, generator=g).sqrt())
        z = torch.where(side, 2 * v - 1, torch.where(v < 0.5, -1.0, 1.0))
        return torch.stack([r * phi.cos(), r * phi.sin(), z], 1)
    if kind == "cone":  # lateral surface (area-uniform in height) + base disk
        phi, side = two_pi * u, torch.rand(n, generator=g) < 0.7
        t = torch.where(side, v.sqrt(), torch.ones(n))  # distance from the apex, in [0, 1]
        r = torch.where(side, 0.8 * t, 0.8 * torch.rand(n, generator=g).sqrt())
        return torch.stack([r * phi.cos(), r * phi.sin(), 1 - 2 * t], 1)
    if kind == "torus":  # R = 0.7, r = 0.3 (rejection-free approximation: area weight ignored)
        phi, theta = two_pi * u, two_pi * v
        rr = 0.7 + 0.3 * theta.cos()
        return torch.stack([rr * phi.cos(), rr * phi.sin(), 0.3 * theta.sin()], 1)
    if kind == "pyramid":  # square base [-1, 1]^2 at z = -1, apex (0, 0, 1): 4 triangles + base
        face = torch.randint(0, 5, (n,), generator=g)
        a, b = u.sqrt(), v  # uniform on a triangle via (1 - a) apex + a (b p1 + (1 - b) p2)
        corners = torch.tensor([[-1.0, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1]])
        p1, p2 = corners[face % 4], corners[(face + 1) % 4]
        tri = (1 - a)[:, None] * torch.tensor([0.0, 0, 1]) + a[:, None] * (b[:, None] * p1 + (1 - b[:, None]) * p2)
        base = torch.stack([2 * u - 1, 2 * v - 1, -torch.ones(n)], 1)
        return torch.where((face == 4)[:, None], base, tri)
    raise ValueError(f"unknown shape {kind!r}; choose among {SHAPES}")


def random_rotation(g: torch.Generator) -> Tensor:
    """A uniformly random 3x3 rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


ROTATIONS = ("upright", "any")


def upright_rotation(g: torch.Generator) -> Tensor:
    """A rotation about the z axis by a uniform random angle, 3x3."""
    angle = 2 * math.pi * torch.rand((), generator=g).item()
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def synthetic_clouds(n: int, *, num_points: int, seed: int, noise: float = 0.01, rotation: str = "any",
                     up_axis: int = 2) -> tuple[Tensor, Tensor]:
    """n labelled shapes (SHAPES, balanced) with random per-axis size, orientation and Gaussian noise.

    rotation="any": uniformly random 3-D orientation; "upright": standing along `up_axis` (the shapes' own
    axis) with a random turn about it, as ModelNet's aligned models (which Point-MAE's recipe assumes).
    Returns ((n, num_points, 3) float32, (n,) int64); deterministic in seed.
    """
    if rotation not in ROTATIONS:
        raise ValueError(f"data.synthetic_rotation must be one of {ROTATIONS}, got {rotation!r}")
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % len(SHAPES))[torch.randperm(n, generator=g)]
    clouds = torch.empty(n, num_points, 3)
    for i, label in enumerate(labels.tolist()):
        pts = shape_surface(SHAPES[label], num_points, g)  # (P, 3)
        rot = random_rotation(g) if rotation == "any" else upright_rotation(g)
        pts = pts * (0.6 + 0.8 * torch.rand(3, generator=g)) @ rot.T
        pts = torch.roll(pts, shifts=up_axis - 2, dims=1)  # the shapes' z axis becomes up_axis
        clouds[i] = pts + noise * torch.randn(num_points, 3, generator=g)
    return clouds, labels


# ------------------------------------------------------------------------------------------ augmentation
class PointAugment:
    """Train-time augmentation of a (P, 3) cloud under the torch RNG: random per-axis scale in `scale`,
    rotation about `up_axis` by a uniform angle (if rotate), translation uniform in +-translate, and
    Gaussian jitter (std `jitter`, clipped at 5x). Point-MAE pre-training uses scale [2/3, 3/2] + translate 0.2."""

    def __init__(self, *, scale: Sequence[float], translate: float, rotate: bool, jitter: float, up_axis: int) -> None:
        self.scale, self.translate, self.rotate, self.jitter, self.up_axis = scale, translate, rotate, jitter, up_axis

    def __call__(self, x: Tensor) -> Tensor:
        lo, hi = self.scale
        x = x * (lo + (hi - lo) * torch.rand(3))
        if self.rotate:
            angle = 2 * math.pi * torch.rand(()).item()
            c, s = math.cos(angle), math.sin(angle)
            a, b = [i for i in range(3) if i != self.up_axis]
            rot = torch.eye(3)
            rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
            x = x @ rot.T
        x = x + (torch.rand(3) * 2 - 1) * self.translate
        if self.jitter > 0:
            x = x + (self.jitter * torch.randn_like(x)).clamp(-5 * self.jitter, 5 * self.jitter)
        return x


# ----------------------------------------------------------------------------------------------- dataset
class PointCloudDataset(FileSubset):
    """The `indices` subset of a source; items {"points": (num_points, 3), "label": int}.

    `load(index)` returns raw points (P, 3) or raises; keys are plain indices (no augmentation, a fixed
    per-index subsample) or (sample_seed, index) (augmented). Broken files are skipped (next sample) or raise.
    """

    what = "point clouds"

    def __init__(self, *, load: Callable[[int], Tensor], labels: Sequence[int], indices: Sequence[int],
                 num_points: int, augment: PointAugment | None, on_error: str, skips: SkipCounter,
                 names: Callable[[int], str], seed: int) -> None:
        super().__init__(labels=labels, indices=indices, on_error=on_error, skips=skips)
        self.load, self.num_points, self.augment, self.names, self.seed = load, num_points, augment, names, seed

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor | int]:
        sample_seed, position = split_key(key)
        if sample_seed is None or self.augment is None:  # deterministic: seeded by (seed, position)
            key = (mix_seed(self.seed, position), position)
        return seeded(key, self._get)

    def _load(self, index: int) -> Tensor:
        """(P, 3) finite points of file `index`; any decoder error becomes a LoadError naming the file."""
        try:
            return clean_points(self.load(index))
        except LoadError:
            raise
        except Exception as err:  # noqa: BLE001 - decoders raise many kinds
            raise LoadError(self.names(index), f"{type(err).__name__}: {err}") from err

    def _item(self, index: int, loaded: Tensor) -> dict[str, Tensor | int]:
        x = normalize_unit_sphere(resample(loaded, self.num_points))  # (num_points, 3)
        if self.augment is not None:
            x = self.augment(x)
        return {"points": x, "label": self.labels[index]}


# ------------------------------------------------------------------------------------------- datamodule
class PointCloudDataModule(SplitDataModule):
    """Point clouds for Point-MAE pre-training and frozen-feature evaluation.

    source: "shapes" (`synthetic_size` generated clouds of SHAPES) or "folder" (`root` with one subfolder
    per class, ModelNet layout, or a CSV `list` of path[,label]); None: folder if root/list is set, else
    shapes ("synthetic" is accepted as an alias of "shapes", as debug=fast sets it). synthetic_rotation:
    "upright" (turned about up_axis only, as ModelNet's aligned models) or "any" (uniform 3-D rotation).
    cache_dir: where sampled meshes are cached (None: re-sampled at every load); mesh_points: points per
    cached mesh (each load then draws num_points of them).
    `image_size` is accepted and ignored so that the image-shaped debug=fast overrides compose.
    """

    unit = "clouds"

    def __init__(
        self,
        *,
        source: str | None = None,
        root: str | None = None,
        list: str | None = None,  # noqa: A002 (config key `data.list`)
        num_points: int = 1024,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        seed: int = 0,
        on_error: str = "skip",
        aug_scale: Sequence[float] = (2 / 3, 3 / 2),
        aug_translate: float = 0.2,
        aug_rotate: bool = False,
        aug_jitter: float = 0.0,
        up_axis: int = 2,
        synthetic_size: int = 600,
        synthetic_noise: float = 0.01,
        synthetic_rotation: str = "any",
        cache_dir: str | None = None,
        mesh_points: int = 8192,
        pin_memory: bool = False,
        image_size: object = None,  # ignored (see class docstring)
    ) -> None:
        super().__init__()
        self.root = check_optional_str("data.root", root)
        self.list_csv = check_optional_str("data.list", list)
        source = resolve_source(source, root=self.root, list_file=self.list_csv, generated="shapes", sources=SOURCES)
        if source == "shapes" and (self.root is not None or self.list_csv is not None):
            raise ValueError("data.root / data.list are only read by data.source='folder' (or null), not 'shapes'")
        self.source = source
        self.num_points = check_int("data.num_points", num_points, minimum=1)
        self.batch_size = check_int("data.batch_size", batch_size, minimum=1)
        self.num_workers = check_int("data.num_workers", num_workers, minimum=0)
        self.val_fraction = check_float("data.val_fraction", val_fraction)
        self.seed = check_int("data.seed", seed)
        self.on_error = check_on_error(on_error)
        scale = check_floats("data.aug_scale", aug_scale, length=2)
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"data.aug_scale must satisfy 0 < min <= max, got {scale}")
        self.up_axis = check_int("data.up_axis", up_axis, minimum=0)
        if self.up_axis > 2:
            raise ValueError(f"data.up_axis must be 0, 1 or 2 (x, y, z), got {up_axis}")
        self.augment = PointAugment(scale=scale, translate=check_float("data.aug_translate", aug_translate),
                                    rotate=check_bool("data.aug_rotate", aug_rotate),
                                    jitter=check_float("data.aug_jitter", aug_jitter), up_axis=self.up_axis)
        self.synthetic_size = check_int("data.synthetic_size", synthetic_size, minimum=2)
        self.synthetic_noise = check_float("data.synthetic_noise", synthetic_noise)
        if synthetic_rotation not in ROTATIONS:
            raise ValueError(f"data.synthetic_rotation must be one of {ROTATIONS}, got {synthetic_rotation!r}")
        self.synthetic_rotation = synthetic_rotation
        self.cache_dir = check_optional_str("data.cache_dir", cache_dir)
        self.mesh_points = check_int("data.mesh_points", mesh_points, minimum=1)
        self.pin_memory = check_bool("data.pin_memory", pin_memory)
        self.skips = SkipCounter()
        self._ready = False

    def _load_source(self) -> tuple[Callable[[int], Tensor], list[int], list[str], Callable[[int], str]]:
        if self.source == "shapes":
            clouds, labels = synthetic_clouds(self.synthetic_size, num_points=self.num_points, seed=self.seed,
                                              noise=self.synthetic_noise, rotation=self.synthetic_rotation,
                                              up_axis=self.up_axis)
            return clouds.__getitem__, labels.tolist(), list(SHAPES), lambda i: f"shape #{i}"
        if self.root is not None:
            paths, labels, classes = index_class_folder(self.root, POINT_EXTS)
            what = repr(self.root)
        else:
            paths, labels, classes = read_list_csv(self.list_csv, extensions=POINT_EXTS)
            what = f"list {self.list_csv!r}"
        def read(path: Path, seed: int) -> np.ndarray:  # the pre-scan fills the mesh cache; later loads read it
            return read_points_cached(path, num_points=self.num_points, seed=seed, cache_dir=self.cache_dir,
                                      mesh_points=self.mesh_points)

        paths, labels = verify_files(paths, labels, lambda p: clean_points(read(p, 0)), on_error=self.on_error,
                                     what=what, skips=self.skips)
        # Loads run under the sample's seeded RNG (datamodules.sampling.seeded): uncached meshes get a fresh sample.
        load = lambda i: torch.from_numpy(read(paths[i], int(torch.randint(0, 2**31, ()))))  # noqa: E731
        return load, labels, classes, lambda i: str(paths[i])

    def _prepare(self) -> None:
        if self._ready:
            return
        load, labels, self._classes, names = self._load_source()
        train_idx, val_idx = split_indices(len(labels), val_fraction=self.val_fraction, seed=self.seed)

        def subset(indices: list[int], augment: PointAugment | None) -> PointCloudDataset:
            return PointCloudDataset(load=load, labels=labels, indices=indices, num_points=self.num_points,
                                     augment=augment, on_error=self.on_error, skips=self.skips, names=names,
                                     seed=self.seed)

        self.train_set = subset(train_idx, self.augment)
        self.train_eval_set = subset(train_idx, None)
        self.val_set = subset(val_idx, None)
        self._ready = True

