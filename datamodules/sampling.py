"""Seeding: `SeededSampler` yields `(sample_seed, index)` keys and `seeded` runs a sample's transform under that
seed, so augmentation is a pure function of (seed, epoch, position): exact resume, and the same batches whatever
the number of workers."""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch.utils.data import DistributedSampler

from mae.core.seeding import mix_seed

T = TypeVar("T")
SampleKey = int | tuple[int, int]
"""What a dataset's __getitem__ receives: a plain index (evaluation) or (sample_seed, index) (training)."""


# ---------------------------------------------------------------------------------------------- seeding
class SeededSampler(DistributedSampler):
    """Yields (sample_seed, index) keys; order and seeds depend only on (seed, epoch, position).

    shuffle=False keeps the order 0..n-1 (seeds still vary per epoch). Lightning calls `set_epoch` at the start
    of every epoch, so a resumed run replays the same epochs.

    Distributed: rank r of `num_replicas` takes positions r, r + W, r + 2W, ... of the one global order (the same on
    every rank), after dropping the last n % W positions, so shards are disjoint and hold no padding duplicates;
    with per-rank batch B the union of the ranks' batch b is the single-process batch b of size B x W. It is a
    DistributedSampler subclass only so that Lightning does not wrap it again; num_replicas / rank default to the
    initialised torch.distributed group (1 / 0 without one). With fewer samples than ranks, rank r gets sample
    position r mod n (a full-batch graph on every rank). `set_start(k)` skips this rank's first k positions once
    (a run resumed mid-epoch continues where the checkpoint was taken).
    """

    def __init__(self, num_samples: int, *, seed: int, shuffle: bool, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        num_replicas = num_replicas if num_replicas is not None else (
            torch.distributed.get_world_size() if distributed else 1)
        rank = rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank {rank}, num_replicas {num_replicas}")
        self.num_samples = num_samples  # the global count (before sharding)
        self.seed = seed
        self.shuffle = shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        self.start = start

    def __len__(self) -> int:
        return max(1, self.num_samples // self.num_replicas)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(self.num_samples, generator=gen) if self.shuffle else torch.arange(self.num_samples)
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=gen)  # (n,) one seed per position
        if self.num_samples < self.num_replicas:  # cannot shard: one sample per rank, repeated across ranks
            shard = slice(self.rank % self.num_samples + self.start, self.rank % self.num_samples + 1)
        else:  # drop the tail: no rank repeats a sample to pad its shard
            usable = len(self) * self.num_replicas
            shard = slice(self.rank + self.start * self.num_replicas, usable, self.num_replicas)
        self.start = 0  # skipping applies to one epoch only
        return iter(zip(seeds[shard].tolist(), order[shard].tolist()))


def split_key(key: SampleKey) -> tuple[int | None, int]:
    """(sample_seed, index) -> itself; a plain index -> (None, index)."""
    if isinstance(key, tuple):
        sample_seed, index = key
        return int(sample_seed), int(index)
    return None, int(key)


def seeded(key: SampleKey, fn: Callable[[int], T]) -> T:
    """fn(index); for a (sample_seed, index) key, run under a forked CPU RNG seeded with sample_seed.

    The CPU generator and Python's `random` (which timm's RandAugment / RandomResizedCropAndInterpolation draw from)
    are reseeded and restored afterwards, so the caller's RNG streams (and any CUDA generator) are untouched. Plain
    int keys run fn as is.
    """
    sample_seed, index = split_key(key)
    if sample_seed is None:
        return fn(index)
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed)
            random.seed(sample_seed)
            return fn(index)
    finally:
        random.setstate(state)
