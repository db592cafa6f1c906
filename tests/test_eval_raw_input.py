"""eval.raw_input: the default frozen probe on the raw input itself (Tokenizer.raw_features, hashed to 4096 wide)."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from mae.core.interfaces import Tokenizer
from mae.core.tokens import Tokens
from mae.eval import format_summary
from mae.eval.encoders import RAW_INPUT_WIDTH, SignHashProjection, raw_input_embed
from mae.eval.protocol import FrozenProbe
from mae.eval.report import RANDOM_INIT_SUFFIX, RAW_INPUT_SUFFIX
from mae.modalities.timeseries.tokenizer import PatchTSTTokenizer
from tests.conftest import compose_cfg

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


class PairTokenizer(Tokenizer):
    """batch["x"] (B, 8) -> 2 tokens of 4 values; batch["pad"] (B, 2) marks padding tokens."""

    token_dim = 4

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        values = batch["x"].reshape(-1, 2, 4)  # (B, 2, 4)
        return Tokens(values=values, pos=torch.zeros(1, 2, 1), pad=batch.get("pad"))


class SumEncoder(nn.Module):
    """Pools each sample to the sum of its token values: (B, 1), blind to which value is where."""

    def pool(self, tokens: Tokens) -> Tensor:
        return tokens.values.sum(dim=(1, 2)).unsqueeze(1)  # (B, 1)


class StubModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokenizer, self.encoder = PairTokenizer(), SumEncoder()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def embed(self, batch: dict, encoder: nn.Module) -> Tensor:
        return encoder.pool(self.tokenizer(batch))


class StubData:
    eval_tasks = ("probe",)

    def __init__(self, *, labels: bool = True, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.has_labels = labels
        self.batches = []
        for _ in range(2):  # train, val
            x = torch.randn(80, 8, generator=g)
            x[:, 0] = x[:, 0].abs() + 0.5  # class = sign of x[:, 0]; the sum of all values hardly shows it
            y = torch.arange(80) % 2
            x[y == 1, 0] *= -1
            split = [{"x": x[i : i + 20], **({"label": y[i : i + 20]} if labels else {})} for i in range(0, 80, 20)]
            self.batches.append(split)

    def eval_dataloaders(self):
        return self.batches[0], self.batches[1]


# ------------------------------------------------------------------------------------------- raw features
def test_default_raw_features_flatten_the_tokens_and_zero_padding():
    x = torch.arange(16.0).reshape(2, 8) + 1
    pad = torch.tensor([[False, True], [False, False]])
    rows = PairTokenizer().raw_features({"x": x, "pad": pad})
    assert rows.shape == (2, 8)
    assert torch.equal(rows[0], torch.cat([x[0, :4], torch.zeros(4)])) and torch.equal(rows[1], x[1])


def test_timeseries_raw_features_join_the_channels_of_each_sample():
    tok = PatchTSTTokenizer(patch_len=4, merge="mean")
    series = torch.randn(3, 12, 2)  # (B, L, C)
    rows = tok.raw_features({"series": series})
    assert rows.shape == (3, 2 * 12)  # (B, C*N*P): not the (B*C, N*P) token rows
    normed, _, _, _ = tok.normalize({"series": series})  # (B, L, C)
    assert torch.allclose(rows[1], normed[1].T.reshape(-1))  # channel 0's patches, then channel 1's


# ------------------------------------------------------------------------------------------- projection
def test_projection_keeps_narrow_rows_and_hashes_wide_ones_reproducibly():
    narrow = torch.randn(5, 10)
    assert torch.equal(SignHashProjection(width=10, seed=0)(narrow), narrow)
    wide = torch.randn(6, 50_000, generator=torch.Generator().manual_seed(1))
    a, b = SignHashProjection(width=RAW_INPUT_WIDTH, seed=3), SignHashProjection(width=RAW_INPUT_WIDTH, seed=3)
    out = a(wide)
    assert out.shape == (6, RAW_INPUT_WIDTH) and torch.equal(out, b(wide))
    assert not torch.equal(out, SignHashProjection(width=RAW_INPUT_WIDTH, seed=4)(wide))
    # a Johnson-Lindenstrauss-type map: squared norms are kept in expectation (here within a few per cent)
    ratio = out.pow(2).sum(1) / wide.pow(2).sum(1)
    assert torch.allclose(ratio, torch.ones(6), atol=0.1)
    assert torch.equal(a(wide[:2]), out[:2])  # the same map for every later batch


def test_projection_refuses_rows_of_another_width():
    project = SignHashProjection(width=8, seed=0)
    project(torch.randn(2, 20))
    with pytest.raises(ValueError, match="eval.raw_input=false"):
        project(torch.randn(2, 21))


def test_raw_input_embed_projects_the_tokenizers_raw_features():
    module = StubModule()
    embed = raw_input_embed(module, seed=0, width=4)
    x = torch.randn(3, 8)
    expected = SignHashProjection(width=4, seed=0)(module.tokenizer.raw_features({"x": x}))
    assert torch.equal(embed({"x": x}), expected)


# ------------------------------------------------------------------------------------------- protocol
def test_frozen_probe_adds_the_raw_input_column_and_raw_pixels_can_win():
    module, data = StubModule(), StubData()
    encoders = {"": module.encoder, RANDOM_INIT_SUFFIX: SumEncoder()}
    metrics = FrozenProbe(knn_k=5, raw_input=True).evaluate(module, data, encoders)
    suffixes = ("", RANDOM_INIT_SUFFIX, RAW_INPUT_SUFFIX)
    keys = {f"eval/{m}{s}" for m in ("linear_acc", "knn_acc", "rankme") for s in suffixes}
    assert set(metrics) == keys
    assert metrics["eval/linear_acc_raw_input"] == 1.0 > metrics["eval/linear_acc"]  # the sum hides the sign of x0
    row = next(line for line in format_summary(metrics).splitlines() if line.startswith("eval/linear_acc"))
    assert row.endswith("<- raw input wins") and "1.0000" in row
    off = FrozenProbe(knn_k=5, raw_input=False).evaluate(module, data, encoders)
    assert not any(key.endswith(RAW_INPUT_SUFFIX) for key in off)


def test_unlabelled_data_gives_the_raw_input_rankme_only():
    module = StubModule()
    metrics = FrozenProbe(raw_input=True).evaluate(module, StubData(labels=False), {"": module.encoder})
    assert set(metrics) == {"eval/rankme", "eval/rankme_raw_input"}


def test_format_summary_prints_pretrained_random_init_and_raw_input_side_by_side():
    metrics = {"eval/linear_acc": 0.91, "eval/rankme": 27.5, "eval/linear_acc_random_init": 0.40,
               "eval/rankme_random_init": 12.25, "eval/linear_acc_raw_input": 0.55, "eval/rankme_raw_input": 300.0,
               "eval/node_acc_mean": 0.8, "eval/node_acc_mean_random_init": 0.3, "train/loss": 0.5}
    lines = format_summary(metrics).splitlines()
    assert lines[0].split() == ["metric", "pretrained", "random", "init", "raw", "input"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("eval/")}
    assert rows == {"eval/linear_acc": ["0.9100", "0.4000", "0.5500"],
                    "eval/rankme": ["27.5000", "12.2500", "300.0000"],
                    "eval/node_acc_mean": ["0.8000", "0.3000", "-"]}  # RankMe is no accuracy: no "wins" flag
    assert len({len(line) for line in lines if line.startswith("eval/")}) == 1  # aligned
    assert any(line.split() == ["train/loss", "0.5000"] for line in lines)
    assert "raw input" not in format_summary({"eval/knn_acc": 0.5, "eval/knn_acc_random_init": 0.2})


def test_a_raw_input_objective_needs_the_baseline_on(tmp_path):
    from mae.modalities.graph.eval import GraphProbe

    data = StubData()
    FrozenProbe(raw_input=True).check(data, objective="eval/linear_acc_raw_input")
    with pytest.raises(ValueError, match="eval.raw_input=false turns off: set objective=eval/linear_acc or eval.raw"):
        FrozenProbe(raw_input=False).check(data, objective="eval/linear_acc_raw_input")
    data.eval_tasks = ("graph",)
    with pytest.raises(ValueError, match="eval=graph does not compute: set objective=eval/knn_acc$"):
        GraphProbe(raw_input=True).check(data, objective="eval/knn_acc_raw_input")
    with pytest.raises(ValueError, match=r"set objective=eval/rankme_raw_input \(RankMe"):
        FrozenProbe().check(StubData(labels=False), objective="eval/knn_acc_raw_input")


def test_raw_input_is_on_by_default_and_every_protocol_accepts_the_key(tmp_path):
    assert compose_cfg([], tmp_path).eval.raw_input is True
    for overrides in (["modality=graph"], ["modality=timeseries_forecast"]):
        evaluation = instantiate(compose_cfg(overrides, tmp_path).eval)
        assert evaluation.raw_input is True and not evaluation.has_raw_input  # not read there
