"""GPU checks (marker `gpu`; skipped without CUDA): ESM-2 3B's shape with random weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from esm.data import Alphabet
from esm.model.esm2 import ESM2
from models_for_tests import (
    DemoModels,
    assert_same_bits,
    coding_fasta,
    every_16_bit_value,
    model_args,
    norm_inputs,
    random_proteins,
    write_real_shape_models,
)
from services import RedisServer, Workers

import virnucpro_worker
from virnucpro_flash_varlen.encoders import PackedEsmEncoder
from virnucpro_v1_bmm.encoder import FairEsmEncoder
from virnucpro_worker.attention.encoding import EncoderSettings
from virnucpro_worker.attention.fused_ops import exact_gelu, residual_add_layer_norm
from virnucpro_worker.attention.kernels import select_kernel, usable_kernels
from virnucpro_worker.attention.packing import build_pack, plan_packs, segment_mean
from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.models.demo import build_demo_dnabert
from virnucpro_worker.models.dnabert import DnabertConfig, DnabertS
from virnucpro_worker.models.dnabert_encoder import DnabertEncoder
from virnucpro_worker.models.dnabert_pretrained import DnabertModel
from virnucpro_worker.models.esm2 import Esm2Model
from virnucpro_worker.queue.client import Client
from virnucpro_worker.settings import Settings
from virnucpro_worker.store.store import Store

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
REALISTIC_LENGTHS = [166, 165, 100, 99, 50, 23, 166, 133, 1, 7, 166, 100, 82, 166, 300] * 20


def random_esm3b(dtype: torch.dtype = torch.float32) -> Esm2Model:
    """The same random weights every call (seeded), built on the GPU, then cast."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        module = ESM2(num_layers=36, embed_dim=2560, attention_heads=40).eval()
    return Esm2Model(module.to(dtype), Alphabet.from_architecture("ESM-1b"), None, "")


@pytest.fixture(scope="module")
def esm3b() -> Esm2Model:
    return random_esm3b()


@pytest.fixture(scope="module")
def reference(esm3b) -> tuple[list[str], torch.Tensor]:
    proteins = random_proteins(REALISTIC_LENGTHS, seed=2)
    settings = EncoderSettings(torch.device("cuda"), torch.float32, 2048)
    return proteins, FairEsmEncoder(esm3b, settings).embed(proteins)


def test_esm3b_shape(esm3b):
    module = esm3b.module
    assert (module.num_layers, module.embed_dim, module.attention_heads) == (36, 2560, 40)


VARLEN_KERNELS = ("flash-attn", "triton-varlen", "torch-varlen")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kernel_name", VARLEN_KERNELS)
def test_flash_varlen_half_precision_matches_fp32(esm3b, reference, dtype, kernel_name):
    """Each varlen kernel usable here."""
    proteins, expected = reference
    device = torch.device("cuda")
    usable = [kernel.name for kernel in usable_kernels(device, dtype)]
    if kernel_name not in usable:
        pytest.skip(f"{kernel_name} is not installed here (usable: {', '.join(usable)})")
    kernel = select_kernel(device, dtype, name=kernel_name)
    settings = EncoderSettings(device, dtype)
    encoder = PackedEsmEncoder(random_esm3b(dtype), settings, attention=kernel)
    embedded = encoder.embed(proteins)
    cosine = F.cosine_similarity(embedded.double(), expected.double(), dim=1)
    print(f"{dtype} {encoder.kernel}: min cosine {cosine.min():.7f}")
    assert cosine.min() >= 0.9999


def test_v1_bmm_half_precision_matches_fp32_on_long_proteins(esm3b):
    """fair-esm's padded path in bf16, with its rotary tables built in fp32, up to 1024+."""
    proteins = random_proteins([1100, 1024, 700, 166, 100, 37], seed=4)
    cuda = torch.device("cuda")
    expected = FairEsmEncoder(esm3b, EncoderSettings(cuda, torch.float32, 4096)).embed(proteins)
    half = random_esm3b(torch.bfloat16)
    embedded = FairEsmEncoder(half, EncoderSettings(cuda, torch.bfloat16, 4096)).embed(proteins)
    cosine = F.cosine_similarity(embedded.double(), expected.double(), dim=1)
    print(f"v1-bmm bf16: min cosine {cosine.min():.7f}")
    assert cosine.min() >= 0.9999


def test_packed_fp32_on_gpu_matches_fair_esm(esm3b, reference):
    proteins, expected = reference
    encoder = PackedEsmEncoder(esm3b, EncoderSettings(torch.device("cuda"), torch.float32))
    assert encoder.kernel == "sdpa-padded"
    cosine = F.cosine_similarity(encoder.embed(proteins).double(), expected.double(), dim=1)
    assert cosine.min() >= 0.99999


def random_dnabert_s(dtype: torch.dtype) -> DnabertModel:
    """DNABERT-S's shape (12 x 768, 12 heads, GLU 3072) with seeded random weights on the GPU,
    and the demo tokenizer."""
    _, tokenizer = build_demo_dnabert(0)
    config = DnabertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        module = DnabertS(config).eval()
    return DnabertModel(module.to(dtype), tokenizer, folder=None, files={})


def test_dnabert_half_precision_matches_fp32():
    rng = random.Random(3)
    slices = ["".join(rng.choices("ACGT", k=n)) for n in [501, 499, 301, 151, 31, 4] * 30]
    cuda = torch.device("cuda")
    reference = random_dnabert_s(torch.float32)
    kernel = select_kernel(cuda, torch.float32, needs_alibi=True)
    expected = DnabertEncoder(reference, EncoderSettings(cuda, torch.float32, 8192), kernel).embed(
        slices
    )
    half = random_dnabert_s(torch.bfloat16)
    kernel = select_kernel(cuda, torch.bfloat16, needs_alibi=True)
    embedded = DnabertEncoder(half, EncoderSettings(cuda, torch.bfloat16, 8192), kernel).embed(
        slices
    )
    cosine = F.cosine_similarity(embedded.double(), expected.double(), dim=1)
    print(f"DNABERT-S bf16 {kernel.name}: min cosine {cosine.min():.7f}")
    assert cosine.min() >= 0.999


def test_predict_on_the_gpu_with_demo_models(tmp_path):
    conformance = Path(__file__).parent / "data" / "conformance"
    demo = DemoModels.write(tmp_path / "demo")
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(conformance / "test_fixed_500bp.fa"),
            "--chunk-size",
            "500",
            "--out",
            str(out),
            "--device",
            "cuda",
            *model_args(demo),
            "--no-progress",
        ]
    )
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["dtype"] == "bf16" and run["device"].startswith("cuda")
    assert run["kernels"]["esm2"] == select_kernel(torch.device("cuda"), torch.bfloat16).name
    assert len((out / "prediction_results.txt").read_text().splitlines()) == 1 + 4


@pytest.mark.parametrize("deltas", [0, 1, 2])
def test_fused_add_layer_norm_in_bf16_matches_fp32(deltas):
    """The sum is rounded once; the norm of the unrounded sum is within a bf16 step of fp32."""
    norm, x, added = norm_inputs(2560, deltas, torch.bfloat16, "cuda")
    summed, normalized = residual_add_layer_norm(x, added, norm)
    exact = sum((delta.float() for delta in added), x.float())
    assert torch.equal(summed, exact.bfloat16())
    expected = F.layer_norm(exact, (2560,), norm.weight.float(), norm.bias.float(), norm.eps)
    assert torch.allclose(normalized.float(), expected, rtol=4e-3, atol=4e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gelu_kernel_returns_this_gpus_gelu_for_every_16_bit_value(dtype):
    """All 65,536 bit patterns and an fc1-sized tensor: F.gelu's bits on this GPU, in place."""
    every = every_16_bit_value(dtype, "cuda")
    actual = every.clone()
    assert exact_gelu(actual) is actual
    assert_same_bits(actual, F.gelu(every))
    torch.manual_seed(0)
    fc1 = (torch.randn(65536, 10240, device="cuda") * 2 - 0.5).to(dtype)
    assert torch.equal(exact_gelu(fc1.clone()).view(torch.int16), F.gelu(fc1).view(torch.int16))


def test_segment_sums_are_the_same_bits_every_run_on_real_packs():
    """The per-sequence means of a 65,536-token pack of kept frames, 2560 wide: `index_add_`
    on CUDA adds atomically in any order; the segment sum must give the same bits each time."""
    lengths = [n + 2 for n in REALISTIC_LENGTHS * 20]
    order = plan_packs(lengths, 65536)[0]
    pack = build_pack(order, {i: [0] * lengths[i] for i in order}).to(torch.device("cuda"))
    torch.manual_seed(1)
    hidden = torch.randn(sum(pack.lengths), 2560, device="cuda").bfloat16()
    keep = torch.rand(sum(pack.lengths), device="cuda") > 0.05
    first = segment_mean(hidden, pack, keep)
    for _ in range(10):
        assert torch.equal(segment_mean(hidden, pack, keep), first)
    exact = torch.zeros(len(pack.lengths), 2560, dtype=torch.float64, device="cuda")
    exact.index_add_(0, pack.sequence_index, hidden.double() * keep[:, None])
    counts = torch.zeros(len(pack.lengths), device="cuda").index_add_(
        0, pack.sequence_index, keep.float()
    )
    assert torch.allclose(first.double(), exact / counts[:, None].double(), rtol=0, atol=1e-5)


def test_every_way_of_running_gives_the_same_bits(tmp_path, monkeypatch):
    """Real-shape packs (65,536-token packs of 500 bp chunks' frames; ESM-2 3B's width in 4 of
    its layers, DNABERT-S, the MLP; random weights): `predict` twice, the Python API, and a job
    cut into several shards served by two workers give byte-identical result files."""
    fasta = tmp_path / "coding.fa"
    coding_fasta(fasta, 3000)
    models = write_real_shape_models(tmp_path / "models", fasta, esm_layers=4)
    monkeypatch.setenv("VIRNUCPRO_BLOCK_BASES", "250000")
    options = ["--chunk-size", "500", "--models", str(models), "--no-progress"]
    for run in ("predict", "predict-again"):
        assert main(["predict", str(fasta), *options, "--out", str(tmp_path / run)]) == 0
    virnucpro_worker.load_models(models=models).predict(fasta, 500).write(tmp_path / "api")

    redis = RedisServer(tmp_path / "redis").start()
    database = f"sqlite:///{tmp_path / 'jobs.db'}"
    workers = Workers(redis.url, database, models, block_bases=250_000)
    try:
        client = Client(redis.url, database, Settings(block_bases=250_000))
        job = client.submit(fasta, chunk_size=500, shard_chunks=300)
        for _ in range(2):
            workers.start("--burst")
        status = client.wait(job, timeout=900)
        assert status.state == "succeeded", status.line()
        client.write_outputs(job, tmp_path / "queue")
        assert len(Store(database).shards(job)) >= 4
    finally:
        workers.stop()
        redis.kill()
    for run in ("predict-again", "api", "queue"):
        for name in ("prediction_results.txt", "sequence_summary.tsv"):
            same = (tmp_path / run / name).read_bytes() == (
                tmp_path / "predict" / name
            ).read_bytes()
            assert same, f"{run}: {name} differs from predict's"
