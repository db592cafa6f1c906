"""Graphs / GraphMAE: masking, replacement, re-masking, SCE, both encoders, batching, bad input."""
from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from torch_geometric.data import Data

from datamodules.graph.datamodule import GraphDataModule
from datamodules.graph.ops import (
    CSR,
    bfs_subgraph,
    clean_graph,
    collate_graphs,
    laplacian_pe,
    random_walk_pe,
)
from mae.core.tokens import Mask
from mae.modalities.graph.decoder import GraphDecoder
from mae.modalities.graph.encoder import GraphEncoder
from mae.modalities.graph.losses import sce_loss
from mae.modalities.graph.masking import GraphMask, GraphMasker, real_hidden_counts
from mae.modalities.graph.tokenizer import GraphTokenizer
from tests.conftest import compose_cfg


def ring(n: int) -> torch.Tensor:
    i = torch.arange(n)
    return torch.cat([torch.stack([i, (i + 1) % n]), torch.stack([(i + 1) % n, i])], 1)


def graph_items(sizes: list[int], width: int = 6, pe_dim: int = 4, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(n, width, generator=g), "pe": torch.randn(n, pe_dim, generator=g), "edge_index": ring(n),
             "label": i % 2, "node_label": torch.full((n,), -1)} for i, n in enumerate(sizes)]


def tokens_of(sizes: list[int], width: int = 6):
    return GraphTokenizer(num_features=width, pe_dim=4)(collate_graphs(graph_items(sizes, width)))


# ------------------------------------------------------------------------------------------- masking
def test_mask_hides_exact_ratio_of_real_nodes_per_graph():
    tokens = tokens_of([20, 13, 7, 1])
    mask = GraphMasker(ratio=0.5)(tokens, torch.Generator().manual_seed(0))
    real = ~tokens.pad
    hidden = mask.hidden_bool()
    expected = real_hidden_counts(real.sum(1), 0.5)
    assert expected.tolist() == [10, 7, 4, 1]  # n - clamp(floor(n/2), 1, n-1); a 1-node graph hides its node
    assert (hidden & real).sum(1).tolist() == expected.tolist()
    n = tokens.num_tokens
    shuffle = torch.cat([mask.keep, mask.masked], 1)
    assert torch.equal(shuffle.sort(1).values, torch.arange(n).expand(4, n))  # a partition of every row
    assert torch.equal(torch.gather(shuffle, 1, mask.restore), torch.arange(n).expand(4, n))
    again = GraphMasker(ratio=0.5)(tokens, torch.Generator().manual_seed(0))
    other = GraphMasker(ratio=0.5)(tokens, torch.Generator().manual_seed(1))
    assert torch.equal(again.masked, mask.masked) and not torch.equal(other.hidden_bool(), hidden)


def test_replace_rate_substitutes_random_nodes_of_the_same_graph():
    tokens = tokens_of([40, 33])
    mask = GraphMasker(ratio=0.5, replace_rate=0.25)(tokens, torch.Generator().manual_seed(3))
    hidden, real = mask.hidden_bool(), ~tokens.pad
    assert mask.replaced.sum(1).tolist() == [math.floor(20 * 0.25), math.floor(17 * 0.25)]
    assert bool((mask.replaced <= (hidden & real)).all())  # only hidden real nodes are replaced
    enc_in = mask.encoder_input(tokens)
    for b in range(2):
        for i in torch.nonzero(mask.replaced[b]).flatten().tolist():
            src = int(mask.replace_source[b, i])
            assert real[b, src] and torch.equal(enc_in.values[b, i], tokens.values[b, src])
    untouched = ~mask.replaced
    assert torch.equal(enc_in.values[untouched], tokens.values[untouched])
    assert torch.equal(mask.mask_token_at(), hidden & ~mask.replaced)
    no_replace = GraphMasker(ratio=0.5, replace_rate=0.0)(tokens, torch.Generator().manual_seed(3))
    assert not bool(no_replace.replaced.any())
    with pytest.raises(ValueError, match="replace_rate"):
        GraphMasker(ratio=0.5, replace_rate=1.0)


def test_gat_encoder_ignores_hidden_inputs_and_sees_the_whole_graph():
    torch.manual_seed(0)
    tokens = tokens_of([12, 9])
    enc = GraphEncoder(token_dim=6, dim=16, depth=2, num_heads=2, feat_drop=0.0, attn_drop=0.0).eval()
    with torch.no_grad():
        enc.mask_token.normal_()
    mask = GraphMasker(ratio=0.5)(tokens, torch.Generator().manual_seed(0))
    out = enc(mask.encoder_input(tokens), mask)
    assert out.shape == (2, 12, 16)  # every node, not only the visible ones
    changed = tokens.values.clone()
    changed[mask.hidden_bool()] += 5.0  # hidden inputs are replaced by [MASK]: no effect
    tokens2 = type(tokens)(values=changed, pos=tokens.pos, pad=tokens.pad, edge_index=tokens.edge_index)
    assert torch.allclose(enc(mask.encoder_input(tokens2), mask), out, atol=1e-6)
    assert not torch.allclose(enc(tokens2, None), enc(tokens, None))  # unmasked: the inputs matter


def test_remasking_happens_before_the_decoder():
    torch.manual_seed(0)
    tokens = tokens_of([12, 9])
    mask = GraphMasker(ratio=0.5)(tokens, torch.Generator().manual_seed(0))
    latent = torch.randn(2, 12, 16)
    perturbed = latent + 3.0 * mask.hidden_bool().unsqueeze(-1)  # change only the hidden nodes' latents

    def decode(remask: bool, z: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)
        dec = GraphDecoder(enc_dim=16, num_prefix=0, out_dim=6, dim=16, feat_drop=0.0, attn_drop=0.0, remask=remask)
        return dec.eval()(z, tokens, mask)

    assert decode(True, latent).shape == (2, mask.masked.shape[1], 6)
    assert torch.allclose(decode(True, latent), decode(True, perturbed), atol=1e-6)
    assert not torch.allclose(decode(False, latent), decode(False, perturbed))
    plain = Mask(keep=mask.keep, masked=mask.masked, restore=mask.restore)
    with pytest.raises(ValueError, match="GraphEncoder"):  # visible-only latents cannot feed a GNN decoder
        GraphDecoder(enc_dim=16, num_prefix=0, out_dim=6)(latent[:, :3], tokens, plain)


def test_sce_matches_its_formula():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    cos = (pred * target).sum(-1) / (pred.norm(dim=-1) * target.norm(dim=-1))
    for alpha in (1.0, 2.0, 3.0):
        assert torch.allclose(sce_loss(pred, target, alpha=alpha), ((1 - cos) ** alpha).mean(), atol=1e-6)
    weight = torch.tensor([[1.0, 1, 0, 0, 1], [0, 0, 0, 1, 1]])
    expected = (((1 - cos) ** 2) * weight).sum() / weight.sum()
    assert torch.allclose(sce_loss(pred, target, weight, alpha=2.0), expected, atol=1e-6)
    assert float(sce_loss(target * 3.0, target)) == pytest.approx(0.0, abs=1e-6)  # scale-invariant
    with pytest.raises(ValueError, match="alpha"):
        sce_loss(pred, target, alpha=0.5)


# ----------------------------------------------------------------------------------------- both encoders
@pytest.mark.parametrize("model", ["gat", "graph_transformer"])
def test_both_encoders_train_on_node_and_graph_batches(model, tmp_path):
    over = ["modality=graph", f"model={model}", "model.encoder.dim=16", "model.encoder.depth=1",
            "model.encoder.num_heads=2", "model.decoder.dim=16", "model.decoder.depth=1", "model.decoder.num_heads=1",
            "data.num_features=6", "data.pe_dim=4", f"data.dir={tmp_path}"]
    module = instantiate(compose_cfg(over, tmp_path).module)
    assert type(module.encoder).__name__ == ("GraphEncoder" if model == "gat" else "Encoder")
    assert type(module.masker).__name__ == "GraphMasker" and module.loss_fn.func.__name__ == "sce_loss"
    batch = collate_graphs(graph_items([11, 6, 9]))
    out = module(batch, torch.Generator().manual_seed(0))
    assert out["pred"].shape == (3, 6, 6) and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert module.encoder_factory is not None and all(
        p.grad is not None for n, p in module.encoder.named_parameters() if "mask_token" not in n and p.requires_grad)
    emb = module.embed(batch)
    assert emb.shape == (3, 16)


def test_batched_graphs_do_not_leak_into_each_other():
    """The encoders' latents of a graph in a padded batch equal those of the graph alone."""
    torch.manual_seed(0)
    items = graph_items([10, 4, 7])
    tok = GraphTokenizer(num_features=6, pe_dim=4)
    gat = GraphEncoder(token_dim=6, dim=8, depth=2, num_heads=2).eval()
    batched = gat(tok(collate_graphs(items)), None)  # (3, 10, 8)
    for b, item in enumerate(items):
        alone = gat(tok(collate_graphs([item])), None)[0]
        assert torch.allclose(batched[b, : len(alone)], alone, atol=1e-5)
    sliced = {k: v[:2] if k != "edge_index" else v for k, v in collate_graphs(items).items()}  # pictures callback
    tokens = tok(sliced)
    assert int(tokens.edge_index.max()) < 2 * 10 and tokens.edge_index.shape[1] == 2 * (10 + 4)


def test_bfs_subgraphs_are_bounded_and_induced():
    n = 200
    edge_index = torch.cat([ring(n), torch.stack([torch.zeros(n - 1, dtype=torch.long), torch.arange(1, n)])], 1)
    edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)  # node 0 is a hub
    csr = CSR(edge_index, n)
    torch.manual_seed(0)
    nodes, local = bfs_subgraph(csr, edge_index, 5, hops=2, max_nodes=30)
    assert nodes[0] == 5 and len(nodes) == 30 and len(set(nodes.tolist())) == 30
    assert {4, 6, 0} <= set(nodes.tolist())  # first hop kept whole
    pairs = {(int(a), int(b)) for a, b in edge_index.t()}
    for a, b in local.t().tolist():
        assert (int(nodes[a]), int(nodes[b])) in pairs
    small, _ = bfs_subgraph(csr, edge_index, 5, hops=1, max_nodes=100)
    assert set(small.tolist()) == {5, 4, 6, 0}


# ----------------------------------------------------------------------------------------- bad input
def test_clean_graph_handles_self_loops_no_edges_isolated_nodes_and_missing_features():
    stats: dict[str, int] = {}
    g = Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 1, 2]]), num_nodes=5)  # 2 self-loops, nodes 2-4 isolated
    out = clean_graph(g, num_features=4, what="g", stats=stats)
    assert stats["self_loops_removed"] == 2 and stats["isolated_nodes"] == 3
    assert stats["graphs_with_degree_features"] == 1
    assert out.x.tolist()[:3] == [[0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]  # one-hot degree
    empty = clean_graph(Data(x=torch.ones(3, 4), edge_index=torch.empty(2, 0, dtype=torch.long)), num_features=4,
                        what="e", stats=stats)
    assert empty.edge_index.shape == (2, 0) and stats["graphs_without_edges"] == 1
    pe = laplacian_pe(empty.edge_index, 3, 8)  # fewer nodes than encoding columns: zero-padded, finite
    assert pe.shape == (3, 8) and torch.isfinite(pe).all() and not pe[:, 2:].any()
    assert random_walk_pe(empty.edge_index, 3, 5).shape == (3, 5)
    enc = GraphEncoder(token_dim=4, dim=8, depth=1, num_heads=2).eval()
    tokens = GraphTokenizer(num_features=4, pe_dim=8)(collate_graphs(
        [{"x": empty.x, "pe": pe, "edge_index": empty.edge_index, "label": 0, "node_label": torch.full((3,), -1)}]))
    assert torch.isfinite(enc(tokens, None)).all()
    with pytest.raises(ValueError, match="data.num_features=4"):
        clean_graph(Data(x=torch.ones(3, 4), edge_index=ring(3)), num_features=7, what="w", stats={})


def write_csv(path, rows):
    path.write_text("smiles,label\n" + "\n".join(rows) + "\n")
    return str(path)


def test_smiles_invalid_are_skipped_and_counted_labels_may_be_missing(tmp_path):
    pytest.importorskip("rdkit", reason="molecules need the optional rdkit extra")
    csv = write_csv(tmp_path / "mols.csv", ["CCO,1", "not_a_smiles,0", "c1ccccc1,0", "C,", "C1CC(,1", "CC(=O)O,1"])
    dm = GraphDataModule(root=csv, num_features=9, pe="random_walk", pe_dim=3, batch_size=2, val_fraction=0.25)
    with pytest.warns(UserWarning, match="invalid SMILES"):
        dm.setup()
    assert dm.source == "smiles" and dm.level == "graph" and dm.skips.count == 2 and len(dm.graphs) == 4
    labels = [int(g.y) for g in dm.graphs]
    assert labels == [1, 0, -1, 1]  # "C," has no label
    assert dm.stats["graphs_without_edges"] == 1  # methane: one atom, no bond
    with pytest.raises(ValueError, match="line 3: invalid SMILES"):
        GraphDataModule(root=csv, num_features=9, on_error="raise").setup()


def test_unlabeled_graph_gives_rankme_only(tmp_path):
    cfg = compose_cfg(["modality=graph", "data.source=karate", "data.num_features=34", "model.encoder.dim=8",
                       "model.encoder.num_heads=2", "model.decoder.dim=8"], tmp_path)
    dm, module = instantiate(cfg.data), instantiate(cfg.module)
    dm.setup()
    dm.graphs[0].y = None
    dm._prepare_nodes(dm.graphs[0], dm.pes[0], flip=False)
    from mae.modalities.graph.eval import GraphProbe

    metrics = GraphProbe(knn_k=5)(module, dm)
    assert set(metrics) == {"eval/rankme", "eval/rankme_random_init"}


def test_node_level_split_and_subgraph_batches(tmp_path):
    dm = GraphDataModule(source="sbm", synthetic_size=120, sbm_blocks=3, num_features=16, pe_dim=4, probe_per_class=5,
                         subgraph_nodes=20, batch_size=4, sbm_p_in=0.1, sbm_p_out=0.01)
    dm.setup()
    assert dm.level == "node" and len(dm.probe_train) == 15
    assert set(dm.node_labels[dm.probe_train].tolist()) == {0, 1, 2}
    assert not set(dm.probe_train.tolist()) & set(dm.probe_eval.tolist())
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape[0] == 4 and batch["x"].shape[1] <= 20
    assert bool((batch["node_label"][~batch["pad"]] >= 0).all())  # every real node of the SBM is labelled
    again = next(iter(dm.train_dataloader()))  # sampling is a pure function of (seed, epoch, position)
    assert torch.equal(again["x"], batch["x"]) and torch.equal(again["edge_index"], batch["edge_index"])
    first = [b["x"] for b in dm.node_batches(torch.tensor([3, 50]))]
    assert first[0].shape[0] == 2  # one subgraph per node to embed


def test_mask_on_unpadded_full_graph_is_plain_mask_compatible():
    tokens = tokens_of([30])
    assert tokens.pad is None
    mask = GraphMasker(ratio=0.75)(tokens, torch.Generator().manual_seed(0))
    assert isinstance(mask, GraphMask) and mask.masked.shape == (1, 30 - int(30 * 0.25))


def test_laplacian_signs_flip_in_training_only():
    dm = GraphDataModule(source="motifs", synthetic_size=12, num_features=8, pe_dim=3, batch_size=4, val_fraction=0.25)
    dm.setup()
    pe = dm.pes[dm.train_set.indices[0]]
    flips = [dm.train_set[(s, 0)]["pe"] for s in range(8)]
    assert all(torch.allclose(f.abs(), pe.abs()) for f in flips)
    assert len({tuple((f * pe).sum(0).sign().tolist()) for f in flips}) > 1  # signs differ between draws
    assert torch.equal(dm.train_set[(5, 0)]["pe"], flips[5])  # ... but are a pure function of the key
    assert torch.equal(dm.train_eval_set[0]["pe"], pe) and dm.level == "graph"
