"""Reading point clouds: point files (.npy, .npz, .txt/.xyz, .ply) and meshes (.off, .obj, .ply, .stl, sampled on
their surface with trimesh), the mesh cache, and the per-cloud cleaning, resampling and unit-sphere normalisation.

Mesh cache (cache_dir): a mesh is sampled once with `mesh_points` surface points, stored under
cache_dir/v<version>_<mesh_points>pts/<sha256 of the file>.npy, and each load draws `num_points` of them.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

POINT_EXTS = (".npy", ".npz", ".txt", ".xyz", ".ply", ".off", ".obj", ".stl")
MESH_EXTS = (".off", ".obj", ".ply", ".stl")


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


MAX_ABS_COORD = 1e15
"""The largest |coordinate| a cloud may hold. No scan or model reaches it in any unit (the Earth's radius is 6.4e12 in
micrometres); it keeps the centring and unit-sphere scaling finite in float32 with a margin (the squared distances
overflow from about 1e19), and catches the usual garbage: binary floats read with the wrong byte order or type reach
magnitudes near 1e38, which give NaN after the normalisation."""


def clean_points(points: np.ndarray | Tensor) -> Tensor:
    """Drop non-finite rows (NaN / inf: missing points, as Open3D's remove_non_finite_points); raise ValueError on
    an empty cloud, on a coordinate beyond +-MAX_ABS_COORD (checked before the cast to float32, so 1e39 is refused,
    not dropped as inf) and on a degenerate (all points equal) cloud. -> (P, 3) float32."""
    x = torch.as_tensor(points)
    x = x[torch.isfinite(x).all(dim=1)]  # (P', 3)
    if len(x) == 0:
        raise ValueError("no finite points")
    peak = float(x.abs().max())
    if peak > MAX_ABS_COORD:
        raise ValueError(f"coordinates reach {peak:.3g}, beyond +-{MAX_ABS_COORD:g}, which no real scan or model "
                         "has (binary data read with the wrong byte order or type?); fix or remove the file")
    x = x.to(torch.float32)
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
