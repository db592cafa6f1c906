"""Generated labelled point clouds (the demo data, as MNIST is for images): surfaces of SHAPES with random
per-axis size, orientation (ROTATIONS) and Gaussian noise."""
from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor

SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid")


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


Rotation = Literal["upright", "any"]  # data.synthetic_rotation
ROTATIONS = get_args(Rotation)


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
