"""DNABERT-S: architecture, packed equals one-at-a-time, checkpoint loading, demo model."""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from virnucpro_worker.attention.encoding import EncoderSettings
from virnucpro_worker.attention.kernels import KERNELS, select_kernel
from virnucpro_worker.attention.packing import plan_packs
from virnucpro_worker.errors import UserError
from virnucpro_worker.models.demo import build_demo_dnabert
from virnucpro_worker.models.dnabert import DnabertConfig, alibi_slopes
from virnucpro_worker.models.dnabert_encoder import DnabertEncoder
from virnucpro_worker.models.dnabert_pretrained import (
    DnabertModel,
    load_dnabert,
    save_dnabert_folder,
)

CPU = torch.device("cpu")
KERNEL = select_kernel(CPU, torch.float32, needs_alibi=True)
TOLERANCE = 1e-5


def random_dna(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(length))


def mixed_sequences() -> list[str]:
    """1 base to 1200 bases, ambiguity letters and an unknown letter, in no length order."""
    rng = random.Random(7)
    sequences = [random_dna(rng, n) for n in (500, 1, 333, 1200, 2, 3, 1001, 50, 7, 171)]
    sequences.append("ACGTNNRYKMACGTSWBDHVACGTAAAATTTT")
    sequences.append("ACGTxACGT")  # lower-case x is not in the vocabulary: [UNK]
    return sequences


def encoder_for(model: DnabertModel, token_budget: int) -> DnabertEncoder:
    return DnabertEncoder(model, EncoderSettings(CPU, torch.float32, token_budget), KERNEL)


def reference_embedding(model: DnabertModel, sequence: str) -> torch.Tensor:
    """What the original computed: model(inputs)[0], mean over all tokens, one at a time."""
    ids = torch.tensor([model.tokenizer.encode(sequence).ids])
    with torch.inference_mode():
        return model.module(ids)[0].mean(dim=0)


def token_counts(model: DnabertModel, sequences: list[str]) -> list[int]:
    return [len(model.tokenizer.encode(s).ids) for s in sequences]


def naive_embedding(model: DnabertModel, sequence: str, slopes: list[float]) -> torch.Tensor:
    """docs/ALGORITHM.md 5.1 written out from the state dict, float64, one head at a time."""
    config = model.module.config
    w = {name: tensor.double() for name, tensor in model.module.state_dict().items()}
    hidden, inner = config.hidden_size, config.intermediate_size
    head_dim = hidden // config.num_attention_heads

    def norm(x: torch.Tensor, prefix: str) -> torch.Tensor:
        eps = config.layer_norm_eps
        return F.layer_norm(x, (hidden,), w[prefix + ".weight"], w[prefix + ".bias"], eps)

    def linear(x: torch.Tensor, prefix: str) -> torch.Tensor:
        return x @ w[prefix + ".weight"].T + w.get(prefix + ".bias", 0)

    ids = model.tokenizer.encode(sequence).ids
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = norm(x, "embeddings.LayerNorm")
    position = torch.arange(len(ids), dtype=torch.float64)
    distance = (position[:, None] - position[None, :]).abs()
    for layer in range(config.num_hidden_layers):
        p = f"encoder.layer.{layer}."
        qkv = linear(x, p + "attention.self.Wqkv")
        heads = []
        for h, slope in enumerate(slopes):
            q, k, v = (qkv[:, part * hidden + h * head_dim :][:, :head_dim] for part in range(3))
            scores = q @ k.T / math.sqrt(head_dim) - slope * distance
            heads.append(torch.softmax(scores, dim=-1) @ v)
        x = norm(
            x + linear(torch.cat(heads, dim=1), p + "attention.output.dense"),
            p + "attention.output.LayerNorm",
        )
        g = linear(x, p + "mlp.gated_layers")
        gelu = g[:, :inner] * 0.5 * (1 + torch.erf(g[:, :inner] / math.sqrt(2)))
        x = norm(x + linear(gelu * g[:, inner:], p + "mlp.wo"), p + "mlp.layernorm")
    return x.mean(dim=0).float()


def expected_slopes(heads: int) -> list[float]:
    """The closed form of the slope rule (docs/ALGORITHM.md 5.1): start = 2^(-8/p) for p a
    power of two heads."""
    lower = 2 ** math.floor(math.log2(heads))
    slopes = [2 ** (-8 * (i + 1) / lower) for i in range(lower)]
    extra = [2 ** (-8 * (2 * i + 1) / (2 * lower)) for i in range(heads - lower)]
    return slopes + extra


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dnabert")
    save_dnabert_folder(*build_demo_dnabert(3), folder)
    return folder


@pytest.fixture(scope="module")
def demo(demo_folder: Path) -> DnabertModel:
    return load_dnabert(demo_folder)


@pytest.fixture(scope="module")
def demo_six_heads(tmp_path_factory: pytest.TempPathFactory) -> DnabertModel:
    folder = tmp_path_factory.mktemp("dnabert6")
    save_dnabert_folder(*build_demo_dnabert(11, num_attention_heads=6), folder)
    return load_dnabert(folder)


def test_alibi_slopes_follow_the_reference_rule():
    eight = [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]
    twelve = [*eight, 2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    assert alibi_slopes(8).tolist() == pytest.approx(eight, rel=1e-7)
    assert alibi_slopes(12).tolist() == pytest.approx(twelve, rel=1e-7)
    for heads in (1, 2, 4, 6, 8, 12, 16, 20):
        slopes = alibi_slopes(heads)
        assert slopes.dtype == torch.float32 and slopes.shape == (heads,)
        assert slopes.tolist() == pytest.approx(expected_slopes(heads), rel=1e-7)


@pytest.mark.parametrize("model_name", ["demo", "demo_six_heads"])
def test_reference_forward_matches_the_architecture_written_out(model_name, request):
    model = request.getfixturevalue(model_name)
    slopes = expected_slopes(model.module.config.num_attention_heads)
    for sequence in ("A", "ACGTNACGTTTGCA", random_dna(random.Random(1), 400)):
        expected = naive_embedding(model, sequence, slopes)
        actual = reference_embedding(model, sequence)
        assert (actual - expected).abs().max() < TOLERANCE


@pytest.mark.parametrize("model_name", ["demo", "demo_six_heads"])
@pytest.mark.parametrize("token_budget", [1, 97, 301, 100_000])
def test_packed_embeddings_equal_one_at_a_time(model_name, token_budget, request):
    model = request.getfixturevalue(model_name)
    sequences = mixed_sequences()
    embeddings = encoder_for(model, token_budget).embed(sequences)
    assert embeddings.dtype == torch.float32 and embeddings.device == CPU
    assert embeddings.shape == (len(sequences), model.module.config.hidden_size)
    expected = torch.stack([reference_embedding(model, s) for s in sequences])
    assert (embeddings - expected).abs().max() < TOLERANCE


def test_small_budgets_give_several_multi_sequence_packs(demo):
    plan = plan_packs(token_counts(demo, mixed_sequences()), 301)
    assert len(plan) > 2 and any(len(pack) > 1 for pack in plan)


def test_the_mean_includes_cls_and_sep(demo):
    sequence = "ACGTACGTTT"
    ids = torch.tensor([demo.tokenizer.encode(sequence).ids])
    with torch.inference_mode():
        states = demo.module(ids)[0]
    embedding = encoder_for(demo, 1000).embed([sequence])[0]
    assert (embedding - states.mean(dim=0)).abs().max() < TOLERANCE
    assert (embedding - states[1:-1].mean(dim=0)).abs().max() > 1e-3


def test_changing_one_sequence_leaves_the_others_unchanged(demo):
    sequences = mixed_sequences()
    changed = list(sequences)
    changed[2] = random_dna(random.Random(99), len(sequences[2]))
    encoder = encoder_for(demo, 100_000)  # one pack: the changed sequence shares it
    before, after = encoder.embed(sequences), encoder.embed(changed)
    others = [i for i in range(len(sequences)) if i != 2]
    assert (before[others] - after[others]).abs().max() < 1e-6
    assert (before[2] - after[2]).abs().max() > 1e-3


def test_order_is_preserved_and_duplicates_agree(demo):
    sequences = mixed_sequences()
    encoder = encoder_for(demo, 97)
    forward = encoder.embed(sequences)
    backward = encoder.embed(sequences[::-1])
    assert (forward - backward.flip(0)).abs().max() < 1e-6
    twice = encoder.embed([sequences[3], sequences[3]])
    assert (twice[0] - twice[1]).abs().max() < 1e-6


def test_empty_input_gives_no_rows(demo):
    assert encoder_for(demo, 100).embed([]).shape == (0, demo.module.config.hidden_size)


def test_a_kernel_without_alibi_is_refused(demo):
    no_alibi = next(kernel for kernel in KERNELS if not kernel.supports_alibi)
    settings = EncoderSettings(CPU, torch.float32, 100)
    with pytest.raises(ValueError, match="ALiBi"):
        DnabertEncoder(demo, settings, no_alibi)
    assert encoder_for(demo, 100).kernel == "sdpa-padded"


def test_demo_is_deterministic_and_its_tokenizer_adds_cls_and_sep(tmp_path):
    save_dnabert_folder(*build_demo_dnabert(5), tmp_path / "a")
    save_dnabert_folder(*build_demo_dnabert(5), tmp_path / "b")
    save_dnabert_folder(*build_demo_dnabert(6), tmp_path / "c")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    a, c = (tmp_path / x / "model.safetensors" for x in "ac")
    assert a.read_bytes() != c.read_bytes()
    _, tokenizer = build_demo_dnabert(5)
    encoding = tokenizer.encode("ACGTAAAATTN")
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]"
    assert "".join(encoding.tokens[1:-1]) == "ACGTAAAATTN"


def test_saved_folder_is_hugging_face_shaped(demo_folder):
    keys = safetensors.torch.load_file(demo_folder / "model.safetensors").keys()
    assert all(key.startswith("bert.") for key in keys)
    assert "bert.encoder.layer.1.mlp.gated_layers.weight" in keys
    assert "bert.encoder.layer.1.mlp.gated_layers.bias" not in keys
    config = DnabertConfig.from_json(demo_folder / "config.json")
    assert config.num_attention_heads == 4 and config.layer_norm_eps == 1e-12


def test_round_trip_gives_identical_embeddings(demo, demo_folder):
    module, tokenizer = build_demo_dnabert(3)
    direct = DnabertModel(module, tokenizer, demo_folder, {})
    sequences = mixed_sequences()
    assert torch.equal(
        encoder_for(direct, 301).embed(sequences), encoder_for(demo, 301).embed(sequences)
    )
    assert set(demo.files) == {"config.json", "model.safetensors", "tokenizer.json"}
    assert all(len(digest) == 64 for digest in demo.files.values())
    assert not demo.module.training


def copy_of(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def rewrite_weights(
    folder: Path, change: Callable[[dict[str, torch.Tensor]], object], bin_file: bool = False
) -> None:
    """Apply `change` to the folder's weights; store them as pytorch_model.bin if `bin_file`."""
    path = folder / "model.safetensors"
    state = safetensors.torch.load_file(path)
    change(state)
    if bin_file:
        path.unlink()
        torch.save(state, folder / "pytorch_model.bin")
    else:
        safetensors.torch.save_file(state, path)


def strip_prefix(state: dict[str, torch.Tensor]) -> None:
    for key in list(state):
        state[key.removeprefix("bert.")] = state.pop(key)


def add_heads(state: dict[str, torch.Tensor]) -> None:
    state["cls.predictions.transform.dense.weight"] = torch.zeros(32, 32)
    state["cls.predictions.bias"] = torch.zeros(10)
    state["bert.pooler.dense.weight"] = torch.zeros(32, 32)


def embeddings_of(folder: Path) -> torch.Tensor:
    return encoder_for(load_dnabert(folder), 301).embed(mixed_sequences()[:6])


@pytest.mark.parametrize(
    ("change", "bin_file"),
    [(strip_prefix, False), (strip_prefix, True), (lambda state: None, True), (add_heads, False)],
    ids=["no prefix", "no prefix, bin", "bin", "pooler and MLM head"],
)
def test_checkpoint_variants_load(demo_folder, tmp_path, change, bin_file):
    folder = copy_of(demo_folder, tmp_path / "variant")
    rewrite_weights(folder, change, bin_file)
    assert torch.equal(embeddings_of(folder), embeddings_of(demo_folder))


def test_safetensors_is_preferred_over_a_bin_file(demo_folder, tmp_path):
    folder = copy_of(demo_folder, tmp_path / "both")
    (folder / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    assert set(load_dnabert(folder).files) == {"config.json", "model.safetensors", "tokenizer.json"}


class NotWeights:
    """Pickling this is pickling code: a weights-only load must refuse it."""


BREAKAGES: dict[str, tuple[Callable[[Path], object], str]] = {
    "missing key": (
        lambda f: rewrite_weights(f, lambda s: s.pop("bert.encoder.layer.0.mlp.wo.bias")),
        "missing weights encoder.layer.0.mlp.wo.bias",
    ),
    "unexpected key": (
        lambda f: rewrite_weights(f, lambda s: s.update({"bert.encoder.extra": torch.zeros(1)})),
        "unexpected weights encoder.extra",
    ),
    "wrong shape": (
        lambda f: rewrite_weights(
            f, lambda s: s.update({"bert.embeddings.LayerNorm.bias": torch.zeros(3)})
        ),
        "embeddings.LayerNorm.bias has shape (3,)",
    ),
    "pickled object": (
        lambda f: rewrite_weights(f, lambda s: s.update({"x": NotWeights()}), bin_file=True),
        "pytorch_model.bin: refused to load: the pickle asks for test_dnabert.NotWeights",
    ),
    "garbage weights": (
        lambda f: (f / "model.safetensors").write_bytes(b"\x00garbage"),
        "cannot read model.safetensors",
    ),
    "no weights": (
        lambda f: (f / "model.safetensors").unlink(),
        "no model.safetensors or pytorch_model.bin",
    ),
    "no config": (lambda f: (f / "config.json").unlink(), "no config.json"),
    "no tokenizer": (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer.json"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_bad_folders_raise_one_line_user_errors(demo_folder, tmp_path, breakage):
    folder = copy_of(demo_folder, tmp_path / "bad")
    damage, message = BREAKAGES[breakage]
    damage(folder)
    with pytest.raises(UserError) as caught:
        load_dnabert(folder)
    text = str(caught.value)
    assert message in text and str(folder) in text and "\n" not in text


def test_config_reads_hugging_face_json(tmp_path):
    path = tmp_path / "config.json"
    values = {
        "architectures": ["BertModel"],
        "vocab_size": 4096,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "alibi_starting_size": 512,
    }
    path.write_text(json.dumps(values))
    config = DnabertConfig.from_json(path)
    assert (config.layer_norm_eps, config.type_vocab_size, config.pad_token_id) == (1e-12, 2, 0)
    assert config.head_dim == 64
    assert config.to_json_dict() == {
        **{k: v for k, v in values.items() if k not in ("architectures", "alibi_starting_size")},
        "layer_norm_eps": 1e-12,
        "type_vocab_size": 2,
        "pad_token_id": 0,
    }
    path.write_text(json.dumps({**values, "num_attention_heads": 7}))
    with pytest.raises(UserError, match="not a multiple"):
        DnabertConfig.from_json(path)
    del values["hidden_size"]
    path.write_text(json.dumps(values))
    with pytest.raises(UserError, match="lacks hidden_size"):
        DnabertConfig.from_json(path)
