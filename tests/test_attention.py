"""Attention backends: packed ESM-2 equals fair-esm, plugin discovery and selection."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from esm.data import Alphabet
from models_for_tests import (
    assert_same_bits,
    every_16_bit_value,
    norm_inputs,
    random_esm2,
    random_proteins,
)

from virnucpro_flash_varlen.encoders import PackedEsmEncoder
from virnucpro_flash_varlen.packed_esm2 import PackedEsm2
from virnucpro_v1_bmm.encoder import FairEsmEncoder
from virnucpro_worker.attention.fused_ops import _triton_fused
from virnucpro_worker.attention.hookspecs import EncoderSettings, hookimpl
from virnucpro_worker.attention.kernels import (
    KERNELS,
    AttentionKernel,
    select_kernel,
    triton_varlen_attention,
)
from virnucpro_worker.attention.packing import MeansInInputOrder, build_pack, plan_packs
from virnucpro_worker.attention.registry import (
    available_backends,
    collect_backends,
    get_backend,
    new_plugin_manager,
    plugin_manager,
)
from virnucpro_worker.attention.rotary import rotary_tables
from virnucpro_worker.errors import UserError
from virnucpro_worker.models.esm2 import Esm2Model

CPU = torch.device("cpu")
MIXED_LENGTHS = [1, 2, 7, 33, 100, 166, 64, 1, 250, 1030, 5, 166, 99]


def esm_model(**kwargs) -> Esm2Model:
    module = random_esm2(**kwargs)
    return Esm2Model(module, Alphabet.from_architecture("ESM-1b"), path=None, checksum="")


def fair_esm_reference(model: Esm2Model, proteins: list[str]) -> torch.Tensor:
    """One sequence at a time through fair-esm, mean over residues 1..min(L, 1024)."""
    convert = model.alphabet.get_batch_converter(truncation_seq_length=1024)
    rows = []
    with torch.no_grad():
        for protein in proteins:
            _, _, tokens = convert([("x", protein)])
            layers = model.module.num_layers
            hidden = model.module(tokens, repr_layers=[layers])["representations"][layers]
            rows.append(hidden[0, 1 : min(len(protein), 1024) + 1].mean(0))
    return torch.stack(rows)


def encoder(name: str, model: Esm2Model, budget: int | None = None):
    settings = EncoderSettings(CPU, torch.float32, budget)
    return available_backends()[name].protein_encoder(model, settings)


@pytest.mark.parametrize("budget", [None, 300, 1037, 2049])
def test_packed_esm2_equals_fair_esm_fp32(budget):
    model = esm_model()
    proteins = random_proteins(MIXED_LENGTHS, seed=1)
    proteins[3] = proteins[3][:10] + "X" + proteins[3][11:]  # an unknown residue
    expected = fair_esm_reference(model, proteins)
    packed = encoder("flash-varlen", model, budget)
    assert packed.kernel == "sdpa-padded"
    embedded = packed.embed(proteins)
    assert embedded.shape == expected.shape
    assert (embedded - expected).abs().max() < 1e-5


def test_small_budget_makes_many_packs_and_keeps_order():
    lengths = [len(p) + 2 for p in random_proteins(MIXED_LENGTHS)]
    assert len(plan_packs(lengths, 300)) >= 5
    model = esm_model(seed=3)
    proteins = random_proteins(MIXED_LENGTHS, seed=4)
    forward = encoder("flash-varlen", model, 300).embed(proteins)
    backward = encoder("flash-varlen", model, 300).embed(proteins[::-1])
    assert torch.allclose(forward, backward.flip(0), atol=1e-6)


@pytest.mark.parametrize("budget", [16384, 65536])
def test_packs_are_at_least_90_percent_full_on_a_realistic_mix(budget):
    """Kept frames of 300/500 bp chunks and short reads, plus BOS/EOS."""
    lengths = [len(p) + 2 for p in random_proteins([166, 165, 100, 99, 50, 23, 133] * 3000)]
    packs = plan_packs(lengths, budget)
    fill = [sum(lengths[i] for i in pack) / budget for pack in packs[:-1]]
    assert len(packs) > 3 and min(fill) >= 0.9
    assert sorted(i for pack in packs for i in pack) == list(range(len(lengths)))


def test_means_come_back_in_input_order():
    means = MeansInInputOrder(5, 2)
    means.add([3, 0], torch.tensor([[3.0, 3.0], [0.0, 0.0]]))
    means.add([4, 1, 2], torch.tensor([[4.0, 4.0], [1.0, 1.0], [2.0, 2.0]]))
    assert torch.equal(means.result(), torch.arange(5.0)[:, None].expand(5, 2))


def test_changing_one_sequence_leaves_the_others_unchanged():
    model = esm_model(seed=5)
    proteins = random_proteins([50, 60, 70, 80], seed=6)
    packed = encoder("flash-varlen", model, 10_000)  # all four in one pack
    before = packed.embed(proteins)
    proteins[1] = random_proteins([200], seed=7)[0]
    after = packed.embed(proteins)
    unchanged = [0, 2, 3]
    assert torch.allclose(before[unchanged], after[unchanged], atol=1e-6)
    assert not torch.allclose(before[1], after[1], atol=1e-3)


def test_v1_bmm_is_fair_esm_batched():
    model = esm_model(seed=8)
    proteins = random_proteins(MIXED_LENGTHS, seed=9)
    batched = encoder("v1-bmm", model).embed(proteins)
    assert (batched - fair_esm_reference(model, proteins)).abs().max() < 1e-5


def test_token_dropout_scaling_matches_fair_esm_per_sequence():
    """A <mask> changes the token-dropout scale of its own sequence only, as in fair-esm."""
    model = esm_model(seed=10)
    convert = model.alphabet.get_batch_converter()
    _, _, tokens = convert([("a", random_proteins([40])[0]), ("b", random_proteins([25])[0])])
    tokens[0, 5] = tokens[0, 9] = model.alphabet.mask_idx
    with torch.no_grad():
        expected = model.module(tokens, repr_layers=[2])["representations"][2]
    token_lists = [tokens[0, :42].tolist(), tokens[1, :27].tolist()]
    pack = build_pack([0, 1], token_lists)
    network = PackedEsm2(model.module)
    with torch.no_grad():
        hidden = network(pack, select_kernel(CPU, torch.float32))
    assert (hidden[:42] - expected[0, :42]).abs().max() < 1e-5
    assert (hidden[42:] - expected[1, :27]).abs().max() < 1e-5


def test_half_precision_rotary_tables_are_built_in_fp32():
    """fair-esm's own bf16 rotary is off by far more than bf16 rounding at long positions;
    the v1-bmm encoder replaces it with fp32 tables."""
    model = esm_model(seed=12)
    rotary = model.module.layers[0].self_attn.rot_emb
    q, k = torch.randn(2, 4, 1030, 16).unbind(0)
    expected, _ = rotary(q, k)  # fp32: fair-esm's own tables are exact enough
    half = esm_model(seed=12)
    half.module.to(torch.bfloat16)
    native, _ = half.module.layers[0].self_attn.rot_emb(q.bfloat16(), k.bfloat16())
    assert (native.float() - expected).abs().max() > 0.1
    FairEsmEncoder(half, EncoderSettings(CPU, torch.bfloat16))
    fixed, _ = half.module.layers[0].self_attn.rot_emb(q.bfloat16(), k.bfloat16())
    assert fixed.dtype == torch.bfloat16
    assert (fixed.float() - expected).abs().max() < 0.05


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(
        UserError,
        match=r"unknown attention backend 'nope' \(available: "
        r"flash-varlen, v1-bmm",
    ):
        get_backend("nope")


THIRD_PARTY = """
from virnucpro_worker.attention.hookspecs import hookimpl


class EchoBackend:
    name = "{name}"
    description = "a third-party test backend"

    def kernels(self, device, dtype):
        return ("echo", "echo")

    def protein_encoder(self, model, settings):
        raise NotImplementedError

    def nucleotide_encoder(self, model, settings):
        raise NotImplementedError


@hookimpl
def register_attention_backends(register):
    register(EchoBackend())
"""


def install_plugin(tmp_path, monkeypatch, module: str, backend_name: str) -> None:
    """A distribution with a `virnucpro.attention` entry point, importable from tmp_path."""
    (tmp_path / f"{module}.py").write_text(THIRD_PARTY.format(name=backend_name))
    info = tmp_path / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(f"""
        [virnucpro.attention]
        {backend_name} = {module}
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)


def test_third_party_backend_through_an_entry_point(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "echo_backend_plugin", "echo")
    backends = collect_backends(new_plugin_manager())
    assert {"echo", "flash-varlen", "v1-bmm"} <= set(backends)
    assert get_backend("echo", backends).kernels(CPU, torch.float32) == ("echo", "echo")


def test_duplicate_backend_names_are_rejected():
    class Impostor:
        @hookimpl
        def register_attention_backends(self, register):
            register(available_backends()["v1-bmm"])

    manager = new_plugin_manager()
    manager.register(Impostor())
    with pytest.raises(UserError, match="'v1-bmm' is registered twice"):
        collect_backends(manager)


def test_a_plugin_registering_a_builtins_name_is_refused(tmp_path, monkeypatch):
    """Built-ins are plugins like any other: a third party taking one's name is a duplicate."""
    install_plugin(tmp_path, monkeypatch, "impostor_backend_plugin", "v1-bmm")
    with pytest.raises(UserError, match="'v1-bmm' is registered twice"):
        collect_backends(new_plugin_manager())


def test_discovering_backends_imports_neither_torch_nor_the_models():
    code = (
        "import sys; from virnucpro_worker.attention.registry import available_backends; "
        "names = sorted(available_backends()); "
        "print(names, [m for m in ('torch', 'esm', 'virnucpro_worker.models.dnabert') "
        "if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "['flash-varlen', 'v1-bmm'] []", result.stderr


def test_one_plugin_manager_per_process():
    assert available_backends() is available_backends()
    assert plugin_manager() is plugin_manager()


# The Triton kernel, run by Triton's interpreter on the CPU in fp32 (on a GPU in tests/test_gpu).
needs_triton = pytest.mark.skipif(
    triton_varlen_attention is None, reason="Triton has no wheels for this platform"
)


@needs_triton
@pytest.mark.parametrize("head_dim", [64, 24])
@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("alibi", [False, True])
@pytest.mark.parametrize("longest", [64, 100, 130, 193, 256, 257])  # 1-4 key chunks; general
def test_triton_kernel_equals_exact_attention(head_dim, rotary, alibi, longest):
    """Strided views of one qkv projection in, rotary (fair-esm: q scaled first) and ALiBi
    inside the kernel; several query and key blocks per sequence, and 1-token sequences."""
    lengths, heads = [n for n in (1, 70, 2, longest, 64, 65) if n <= longest], 3
    pack = build_pack(list(range(len(lengths))), [np.zeros(n, np.int64) for n in lengths])
    torch.manual_seed(0)
    q, k, v = torch.randn(sum(lengths), 3, heads, head_dim).unbind(1)
    options = {
        "alibi_slopes": torch.rand(heads) if alibi else None,
        "rotary": rotary_tables(torch.arange(pack.max_seqlen), head_dim) if rotary else None,
    }
    exact = select_kernel(CPU, torch.float32, needs_alibi=True, name="sdpa-padded")
    expected = exact.attend(q, k, v, pack, 0.3, **options)
    actual = triton_kernel().attend(q, k, v, pack, 0.3, **options)
    assert torch.allclose(actual, expected, atol=2e-5, rtol=1e-5)


@needs_triton
def test_triton_kernel_refuses_an_odd_head_dimension():
    pack = build_pack([0], [np.zeros(3, np.int64)])
    q = torch.randn(3, 2, 5)
    with pytest.raises(ValueError, match="even head dimension"):
        triton_kernel().attend(q, q, q, pack, 1.0)


@needs_triton
def test_triton_kernel_refuses_mixed_dtypes():
    pack = build_pack([0], [np.zeros(3, np.int64)])
    q = torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match="differ in dtype"):
        triton_kernel().attend(q, q, q.double(), pack, 1.0)


@needs_triton
def test_triton_register_cap_applies_only_to_the_head_size_it_was_measured_for():
    from virnucpro_worker.attention.triton_varlen import SHORT_TILE, _tile  # needs Triton

    assert _tile(SHORT_TILE, 64)["maxnreg"] == 128
    assert "maxnreg" not in _tile(SHORT_TILE, 128)
    assert _tile(SHORT_TILE, 128)["CHUNK"] == SHORT_TILE["CHUNK"]


@needs_triton
def test_triton_kernel_offsets_stay_within_32_bits():
    from virnucpro_worker.attention.triton_varlen import offsets_fit_int32  # needs Triton

    assert offsets_fit_int32(65536, 3 * 40 * 64)  # ESM-2 3B's fused projection, default packs
    assert not offsets_fit_int32(2**20, 3 * 40 * 64)


@needs_triton
def test_packed_esm2_with_the_triton_kernel_equals_fair_esm():
    model = esm_model()
    proteins = random_proteins(
        [1, 2, 7, 33, 100, 166, 64, 130, 5], seed=1
    )  # the interpreter is slow
    settings = EncoderSettings(CPU, torch.float32, 300)
    packed = PackedEsmEncoder(model, settings, attention=triton_kernel())
    actual = packed.embed(proteins)
    assert torch.allclose(actual, fair_esm_reference(model, proteins), atol=1e-5)


def triton_kernel() -> AttentionKernel:
    return next(kernel for kernel in KERNELS if kernel.name == "triton-varlen")


@needs_triton
@pytest.mark.parametrize("width", [2560, 48])
@pytest.mark.parametrize("deltas", [0, 1, 2])
def test_fused_add_layer_norm_equals_pytorch(width, deltas):
    """In fp32 here: Triton's interpreter truncates when it casts to bf16 (a GPU rounds to
    nearest), so bf16 is checked in tests/test_gpu.py."""
    norm, x, added = norm_inputs(width, deltas, torch.float32)
    summed, normalized = _triton_fused(x, added, norm, keep_sum=True)
    expected = sum(added, x)
    assert torch.allclose(summed, expected, rtol=0, atol=1e-6)
    assert torch.allclose(normalized, norm(expected), rtol=1e-5, atol=1e-5)
    assert torch.equal(_triton_fused(x, added, norm, keep_sum=False)[1], normalized)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gelu_kernel_returns_pytorchs_gelu_for_every_16_bit_value(dtype):
    """In Triton's interpreter; the GPU test checks it against the GPU's own F.gelu."""
    from virnucpro_worker.attention.fused_ops import _gelu_in_place, _gelu_table  # needs Triton

    torch.manual_seed(0)
    x = torch.cat([every_16_bit_value(dtype), (torch.randn(5000) * 3).to(dtype)])
    expected = F.gelu(x)
    _gelu_in_place[(3,)](x, _gelu_table(CPU, dtype), x.numel(), BLOCK=4096)
    assert_same_bits(x, expected)


def test_exact_gelu_off_the_gpu_is_pytorchs():
    from virnucpro_worker.attention.fused_ops import exact_gelu

    x = torch.randn(7, 5)
    assert torch.equal(exact_gelu(x), F.gelu(x))
