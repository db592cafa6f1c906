"""Graph sources that need no download: generated graph-classification motifs, Cora-like bag-of-words
features for the stochastic-block-model demo, and molecules from a CSV of SMILES (rdkit, optional)."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch_geometric.data import Data

if TYPE_CHECKING:  # the datamodule passes its counter; mae/ does not import datamodules/ at run time
    from datamodules.errors import SkipCounter

MOTIFS = ("cycle", "grid", "tree", "wheel", "erdos_renyi", "barabasi_albert")


def motif_graph(kind: str, n: int, g: torch.Generator) -> Tensor:
    """(2, E) edges of one generated graph of about n nodes (before cleaning)."""
    from torch_geometric.utils import barabasi_albert_graph, erdos_renyi_graph

    idx = torch.arange(n)
    if kind == "cycle":
        return torch.stack([idx, (idx + 1) % n])
    if kind == "wheel":
        rim = torch.arange(1, n)
        return torch.cat([torch.stack([rim, rim % (n - 1) + 1]), torch.stack([torch.zeros_like(rim), rim])], 1)
    if kind == "grid":
        w = max(2, int(math.sqrt(n)))
        c = idx % w  # column of each node in rows of w
        right = torch.stack([idx, idx + 1])[:, (c < w - 1) & (idx + 1 < n)]
        down = torch.stack([idx, idx + w])[:, idx + w < n]
        return torch.cat([right, down], 1)
    if kind == "tree":
        parent = (torch.rand(n - 1, generator=g) * torch.arange(1, n)).long()
        return torch.stack([torch.arange(1, n), parent])
    with torch.random.fork_rng(devices=[]):  # PyG's generators use the global RNG
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
        if kind == "erdos_renyi":
            return erdos_renyi_graph(n, 0.25)
        if kind == "barabasi_albert":
            return barabasi_albert_graph(n, 2)
    raise ValueError(f"unknown motif {kind!r}; choose among {MOTIFS}")


def topic_features(sizes: list[int], width: int, *, words: int, topic_weight: float,
                   seed: int) -> tuple[Tensor, list[int]]:
    """Cora-like binary bag-of-words, (n, width) rows ordered by class: every node draws `words` words, each
    from its class's own block of width/C words with probability `topic_weight`, else uniformly from all."""
    g = torch.Generator().manual_seed(seed)
    c = len(sizes)
    block = max(1, width // c)
    label = torch.arange(c).repeat_interleave(torch.tensor(sizes))  # (n,)
    own = torch.rand(len(label), words, generator=g) < topic_weight
    topic_word = label[:, None] * block + torch.randint(0, block, (len(label), words), generator=g)
    any_word = torch.randint(0, width, (len(label), words), generator=g)
    idx = torch.where(own, topic_word.clamp_max(width - 1), any_word)  # (n, words)
    return torch.zeros(len(label), width).scatter_(1, idx, 1.0), sizes


def motif_dataset(size: int, *, seed: int, min_nodes: int = 8, max_nodes: int = 24, noise_edges: int = 2) -> list[Data]:
    """`size` labelled graphs (MOTIFS, balanced) of random size with `noise_edges` random extra edges, no features."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(size) % len(MOTIFS))[torch.randperm(size, generator=g)]
    graphs = []
    for label in labels.tolist():
        n = int(torch.randint(min_nodes, max_nodes + 1, (1,), generator=g))
        edges = motif_graph(MOTIFS[label], n, g)
        extra = torch.randint(0, n, (2, noise_edges), generator=g)
        graphs.append(Data(edge_index=torch.cat([edges, extra], 1), num_nodes=n, y=torch.tensor([label])))
    return graphs


def class_labels(cells: list[str], *, where: str) -> tuple[list[int], list[str]]:
    """Label cells of a CSV (one per data row, line 2 on) -> (class index per row, -1 for an empty cell = missing;
    class names). Numbers (every non-empty cell parses as one) are class indices 0..max and must be integers >= 0
    ("1.0" is 1): a ValueError names `where`, the line and the value of the first other one (-5, 1.5, -1, nan),
    which would otherwise become a class of its own or vanish into "missing". Any text: class names, sorted."""
    given = [c for c in cells if c]
    if not given:
        return [-1] * len(cells), []
    try:
        numbers = [float(c) if c else None for c in cells]
    except ValueError:  # text labels: class names
        names = sorted(set(given))
        return [names.index(c) if c else -1 for c in cells], names
    for line, (cell, value) in enumerate(zip(cells, numbers), start=2):
        if value is not None and not (math.isfinite(value) and value.is_integer() and value >= 0):
            raise ValueError(f"{where} line {line}: label {cell!r} is not a class index: numeric labels must be "
                             f"integers >= 0 (0..C-1); leave the cell empty for a molecule without a label")
    labels = [-1 if v is None else int(v) for v in numbers]
    return labels, [str(c) for c in range(max(labels) + 1)]


def read_smiles_csv(path: str, *, smiles_column: str, label_column: str | None, on_error: str,
                    skips: SkipCounter) -> tuple[list[Data], list[str]]:
    """Molecules of a CSV (from_smiles: 9 integer atom features as floats); invalid SMILES skipped or raise."""
    import csv

    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:
        raise ImportError("data.source=smiles needs rdkit: pip install rdkit (the `molecules` extra)") from err
    from torch_geometric.utils import from_smiles

    RDLogger.DisableLog("rdApp.*")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"data.root {str(file)!r} (a CSV of SMILES) does not exist")
    with file.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or smiles_column not in rows[0]:
        raise ValueError(f"{str(file)!r} has no column {smiles_column!r} (data.smiles_column); "
                         f"columns: {list(rows[0]) if rows else []}")
    if label_column is not None and label_column not in rows[0]:
        raise ValueError(f"{str(file)!r} has no column {label_column!r} (data.label_column; null for none)")
    raw = [(r.get(label_column) or "").strip() if label_column else "" for r in rows]
    labels, classes = class_labels(raw, where=f"{str(file)!r} column {label_column!r} (data.label_column)")
    graphs = []
    for line, (row, label) in enumerate(zip(rows, labels), start=2):
        smiles = (row[smiles_column] or "").strip()
        if not smiles or Chem.MolFromSmiles(smiles) is None or Chem.MolFromSmiles(smiles).GetNumAtoms() == 0:
            if on_error == "raise":
                raise ValueError(f"{str(file)!r} line {line}: invalid SMILES {smiles!r}")
            skips.skip(f"{file}:{line}", f"invalid SMILES {smiles!r}")
            continue
        mol = from_smiles(smiles)
        graphs.append(Data(x=mol.x.float(), edge_index=mol.edge_index, num_nodes=mol.num_nodes,
                           y=torch.tensor([label])))
    if not graphs:
        raise RuntimeError(f"every one of the {len(rows)} SMILES in {str(file)!r} is invalid")
    if skips.count:
        warnings.warn(f"skipped {skips.count} of {len(rows)} molecules in {str(file)!r} (on_error='skip')",
                      stacklevel=2)
    return graphs, classes
