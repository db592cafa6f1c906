"""Which `GraphDataConfig` options each source and level reads. An option given (different from its default) that
the chosen source does not read would be silently ignored: `unread_options` names each such option and what to
write instead, and the config raises them at construction."""
from __future__ import annotations

from typing import TYPE_CHECKING

from datamodules.checks import changed_options

if TYPE_CHECKING:  # the config calls this module from its __post_init__
    from datamodules.graph.datamodule import GraphDataConfig

SBM_ONLY = ("sbm_blocks", "sbm_p_in", "sbm_p_out", "sbm_features", "sbm_words", "sbm_topic_weight", "sbm_informative",
            "sbm_class_sep")
TOPICS_ONLY = ("sbm_words", "sbm_topic_weight")  # sbm_features=topics
GAUSSIAN_ONLY = ("sbm_informative", "sbm_class_sep")  # sbm_features=gaussian


def given(cfg: GraphDataConfig, key: str) -> bool:
    """The option differs from its default (so someone set it)."""
    return bool(changed_options(cfg, (key,)))


def unread_options(cfg: GraphDataConfig) -> list[str]:
    """One message per option that `cfg.resolved_source` / `cfg.resolved_level` does not read."""
    source, level = cfg.resolved_source, cfg.resolved_level
    chosen = f"data.source={source}" + (" (resolved from data.name)" if cfg.source is None and source == "pyg" else "")
    out = []
    if cfg.name is not None and source != "pyg":
        out.append(f"data.name={cfg.name!r} is read by data.source=pyg only, but {chosen}: drop data.name, or set "
                   f"data.source=pyg (or null) to load that dataset")
    if cfg.root is not None and source != "smiles":
        out.append(f"data.root={cfg.root!r} (a CSV of SMILES) is read by data.source=smiles only, but {chosen}: "
                   f"drop data.root, or drop data.name / set data.source=smiles to read the CSV")
    if cfg.dir is not None and source != "pyg":
        out.append(f"data.dir (the download folder) is read by data.source=pyg only, but {chosen} needs no "
                   f"download: drop data.dir")
    for key in ("smiles_column", "label_column"):
        if given(cfg, key) and source != "smiles":
            out.append(f"data.{key} is read by data.source=smiles (data.root=FILE.csv) only, but {chosen}: "
                       f"drop data.{key}")
    if given(cfg, "synthetic_size") and source not in ("sbm", "motifs"):
        out.append(f"data.synthetic_size sizes the generated sources (sbm: nodes, motifs: graphs) only, but "
                   f"{chosen}: drop data.synthetic_size")
    for key in SBM_ONLY:
        if given(cfg, key) and source != "sbm":
            out.append(f"data.{key} shapes the generated data.source=sbm graph only, but {chosen}: drop data.{key}")
        elif given(cfg, key) and key in TOPICS_ONLY and cfg.sbm_features != "topics":
            out.append(f"data.{key} is read with data.sbm_features=topics only (got {cfg.sbm_features}): drop it "
                       f"or set data.sbm_features=topics")
        elif given(cfg, key) and key in GAUSSIAN_ONLY and cfg.sbm_features != "gaussian":
            out.append(f"data.{key} is read with data.sbm_features=gaussian only (got {cfg.sbm_features}): drop it "
                       f"or set data.sbm_features=gaussian")
    if cfg.subgraph_nodes is not None and level == "graph":
        out.append(f"data.subgraph_nodes cuts one big graph (node level) into subgraphs, but {chosen} is graph "
                   f"level (many small graphs, data.batch_size per batch): drop data.subgraph_nodes")
    elif given(cfg, "subgraph_hops") and cfg.subgraph_nodes is None:
        out.append("data.subgraph_hops is read with data.subgraph_nodes=K only (BFS subgraphs of a node-level "
                   "graph): set data.subgraph_nodes or drop data.subgraph_hops")
    return out
