"""DNABERT-S, the nucleotide encoder (MosaicBERT / DNABERT-2 architecture, docs/ALGORITHM.md 5.1).

The Hugging Face folder ships remote code that breaks on current Triton, so the architecture is
rebuilt here with state-dict keys equal to the checkpoint's. Two forward paths share the layers:
`forward_packed` runs a packed token stream through an attention kernel, `forward` is the plain
one-sequence path with explicit attention that the original tool computed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import tokenizers
import torch
import torch.nn.functional as F
from tokenizers import models, pre_tokenizers, processors
from torch import nn

from ..attention.encoding import EncoderSettings
from ..attention.fused_ops import add_layer_norm
from ..attention.kernels import AttentionKernel
from ..attention.packing import (
    MeansInInputOrder,
    Pack,
    build_pack,
    plan_packs,
    segment_mean,
)
from ..errors import UserError, first_line
from ..files import atomic_write, sha256_started
from .meta import uninitialised
from .model_files import (
    CONFIG_FILE,
    DEMO_MARK,
    SAFETENSORS_FILE,
    TOKENIZER_FILE,
    dnabert_files,
)
from .safe_load import load_weights

CHECKPOINT_PREFIX = "bert."
_CPU = torch.device("cpu")
# The pooler and the masked-LM head play no part in the embeddings.
IGNORED_PREFIXES = ("pooler.", "cls.")

# attend(q, k, v) with q/k/v shaped (..., tokens, heads, head_dim), same shape back.
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DnabertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float = 1e-12
    type_vocab_size: int = 2
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json(cls, path: Path) -> DnabertConfig:
        """Read the fields above from a Hugging Face config.json; other keys are ignored."""
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: cannot read the model config ({error})") from error
        if not isinstance(values, dict):
            raise UserError(f"{path}: the model config is not a JSON object")
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise UserError(f"{path}: the model config lacks {', '.join(missing)}")
        try:
            return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
        except ValueError as error:
            raise UserError(f"{path}: {error}") from error

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The per-head ALiBi slopes, float32 (heads,), as MosaicBERT computes them."""
    return torch.tensor(_slope_list(num_heads), dtype=torch.float32)


def _slope_list(num_heads: int) -> list[float]:
    if math.log2(num_heads).is_integer():
        start = 2 ** -(2 ** -(math.log2(num_heads) - 3))
        # start * start**i rather than start**(i+1): the same float64 rounding as MosaicBERT.
        return [start * start**i for i in range(num_heads)]
    lower = 2 ** math.floor(math.log2(num_heads))
    return _slope_list(lower) + _slope_list(2 * lower)[0::2][: num_heads - lower]


def _require_alibi(kernel: AttentionKernel) -> None:
    if not kernel.supports_alibi:
        raise ValueError(f"attention kernel '{kernel.name}' has no ALiBi bias; DNABERT-S needs it")


class _Embeddings(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # No position embeddings (ALiBi instead); every token has token type 0.
        type_zero = self.token_type_embeddings.weight[0]
        return self.LayerNorm(self.word_embeddings(tokens) + type_zero)


class _SelfAttention(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)


class _AttentionOutput(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class _Attention(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(config)
        self.output = _AttentionOutput(config)
        self.heads = config.num_attention_heads
        self.head_dim = config.head_dim

    def forward(self, hidden: torch.Tensor, attend: Attend) -> torch.Tensor:
        qkv = self.self.Wqkv(hidden).unflatten(-1, (3, self.heads, self.head_dim))
        return self.finish(hidden, attend(*qkv.unbind(-3)))

    def finish(self, hidden: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Output projection, then residual and norm in one pass."""
        return _add_norm(hidden, self.output.dense(attended.flatten(-2)), self.output.LayerNorm)


class _GatedMlp(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        gated, linear = self.gated_layers(hidden).chunk(2, dim=-1)
        # F.gelu defaults to the exact erf form, as the original's nn.GELU().
        return _add_norm(hidden, self.wo(F.gelu(gated) * linear), self.layernorm)


def _add_norm(hidden: torch.Tensor, delta: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """norm(hidden + delta) for rows of any leading shape: one Triton pass on CUDA (the sum is
    not rounded before the norm), exactly PyTorch's ops in fp32 elsewhere (attention/fused_ops)."""
    rows = hidden.reshape(-1, hidden.shape[-1])
    return add_layer_norm(rows, (delta.reshape(rows.shape),), norm).view(hidden.shape)


class _Layer(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.attention = _Attention(config)
        self.mlp = _GatedMlp(config)

    def forward(self, hidden: torch.Tensor, attend: Attend) -> torch.Tensor:
        return self.mlp(self.attention(hidden, attend))


class _LayerStack(nn.Module):
    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, attend: Attend) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, attend)
        return hidden


class DnabertS(nn.Module):
    """Post-LN BERT with fused QKV, ALiBi and a GLU MLP; state-dict keys are the checkpoint's
    without the `bert.` prefix."""

    def __init__(self, config: DnabertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _LayerStack(config)
        self.scale = config.head_dim**-0.5

    def forward_packed(self, pack: Pack, kernel: AttentionKernel) -> torch.Tensor:
        """Last hidden layer [T, hidden] of a packed stream (pack on the module's device)."""
        _require_alibi(kernel)
        slopes = alibi_slopes(self.config.num_attention_heads).to(pack.tokens.device)

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return kernel.attend(q, k, v, pack, self.scale, slopes)

        return self.encoder(self.embeddings(pack.tokens), attend)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Last hidden layer [B, L, hidden] of unpadded rows [B, L] (the original ran B = 1)."""
        length = input_ids.shape[-1]
        slopes = alibi_slopes(self.config.num_attention_heads).to(input_ids.device)
        position = torch.arange(length, device=input_ids.device)
        distance = (position[None, :] - position[:, None]).abs().float()
        bias = -slopes[:, None, None] * distance  # [heads, L, L]

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            q, k, v = (x.transpose(-3, -2) for x in (q, k, v))  # [B, heads, L, head_dim]
            scores = (q @ k.transpose(-1, -2)) * self.scale + bias
            probabilities = scores.float().softmax(dim=-1).to(v.dtype)
            return (probabilities @ v).transpose(-3, -2)

        return self.encoder(self.embeddings(input_ids), attend)


@dataclass
class DnabertModel:
    module: DnabertS
    tokenizer: tokenizers.Tokenizer
    folder: Path
    files: dict[str, str]  # file name -> sha256 hex
    demo: bool = False


def load_dnabert(
    folder: Path, device: torch.device = _CPU, dtype: torch.dtype = torch.float32
) -> DnabertModel:
    """Load a Hugging Face DNABERT-S folder without its remote code."""
    folder = Path(folder)
    paths = dnabert_files(folder)
    digests = {path.name: sha256_started(path) for path in paths}  # hashed while read
    config_path, weights_path, tokenizer_path = paths
    config = DnabertConfig.from_json(config_path)
    # No time spent on a random initialisation that the checkpoint overwrites.
    with uninitialised():
        module = DnabertS(config)
    state = _model_state(_read_weights(weights_path, folder), folder)
    _check_state(module, state, f"DNABERT-S folder {folder}: {weights_path.name}")
    module.load_state_dict(state, strict=True, assign=True)
    module.to(device).to(dtype).eval().requires_grad_(False)
    files = {name: digest.result() for name, digest in digests.items()}
    demo = json.loads(config_path.read_text()).get(DEMO_MARK) is True
    return DnabertModel(module, _read_tokenizer(tokenizer_path, folder), folder, files, demo)


def _read_weights(path: Path, folder: Path) -> Mapping[str, object]:
    if path.name == SAFETENSORS_FILE:
        try:
            return safetensors.torch.load_file(path)
        except (safetensors.SafetensorError, OSError) as error:
            raise UserError(
                f"DNABERT-S folder {folder}: cannot read {path.name} ({first_line(error)})"
            ) from error
    # A checkpoint is data: nothing beyond tensors is allowed (safe_load.py).
    state = load_weights(path, "a DNABERT-S state dict")
    if not isinstance(state, Mapping):
        raise UserError(f"DNABERT-S folder {folder}: {path.name} is not a state dict")
    return state


def _model_state(checkpoint: Mapping[str, object], folder: Path) -> dict[str, torch.Tensor]:
    """Checkpoint keys without the optional `bert.` prefix, pooler and MLM head dropped."""
    state: dict[str, torch.Tensor] = {}
    for key, value in checkpoint.items():
        name = key.removeprefix(CHECKPOINT_PREFIX)
        if name.startswith(IGNORED_PREFIXES):
            continue
        if not isinstance(value, torch.Tensor):
            raise UserError(f"DNABERT-S folder {folder}: weight {key} is not a tensor")
        if name in state:
            raise UserError(f"DNABERT-S folder {folder}: weight {name} appears twice")
        state[name] = value
    return state


def _check_state(module: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """One clear line instead of load_state_dict's multi-line report."""
    expected = module.state_dict()
    problems = []
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing:
        problems.append(f"missing weights {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected weights {_some(unexpected)}")
    problems += [
        f"{name} has shape {tuple(state[name].shape)}, expected {tuple(expected[name].shape)}"
        for name in sorted(expected.keys() & state.keys())
        if state[name].shape != expected[name].shape
    ]
    if problems:
        raise UserError(f"{where}: {'; '.join(problems)}")


def _some(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _read_tokenizer(path: Path, folder: Path) -> tokenizers.Tokenizer:
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for any bad file
        raise UserError(
            f"DNABERT-S folder {folder}: cannot read {path.name} ({first_line(error)})"
        ) from error
    # The original tokenised one sequence at a time, whole.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class DnabertEncoder:
    """The `Encoder` for nucleotide slices: mean of the last layer over all tokens, [CLS] and
    [SEP] included (docs/ALGORITHM.md 5.1)."""

    def __init__(
        self, model: DnabertModel, settings: EncoderSettings, kernel: AttentionKernel
    ) -> None:
        _require_alibi(kernel)
        self.model = model
        self.settings = settings
        self.kernel = kernel.name
        self.token_budget = settings.token_budget
        self._attention = kernel
        model.module.to(device=settings.device, dtype=settings.dtype)

    def embed(self, sequences: Sequence[str]) -> torch.Tensor:
        """Float32 CPU rows [N, hidden] in input order."""
        hidden = self.model.module.config.hidden_size
        token_lists = [
            encoding.ids for encoding in self.model.tokenizer.encode_batch(list(sequences))
        ]
        device = self.settings.device
        means = MeansInInputOrder(len(token_lists), hidden)
        with torch.inference_mode():
            for order in plan_packs([len(t) for t in token_lists], self.token_budget):
                pack = build_pack(order, token_lists, pin=device.type == "cuda").to(device)
                states = self.model.module.forward_packed(pack, self._attention)
                means.add(order, segment_mean(states, pack))
        return means.result()


def save_dnabert_folder(
    module: DnabertS, tokenizer: tokenizers.Tokenizer, folder: Path, demo: bool = False
) -> None:
    """Write the files `load_dnabert` reads, laid out as on Hugging Face (`bert.` keys)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        CHECKPOINT_PREFIX + name: tensor.detach().cpu().contiguous()
        for name, tensor in module.state_dict().items()
    }
    config = module.config.to_json_dict() | ({DEMO_MARK: True} if demo else {})
    config = json.dumps(config, indent=2) + "\n"
    _write(folder / CONFIG_FILE, config.encode())
    _write(folder / SAFETENSORS_FILE, safetensors.torch.save(tensors, metadata={"format": "pt"}))
    _write(folder / TOKENIZER_FILE, tokenizer.to_str(pretty=True).encode())


def _write(path: Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_DEMO_LETTERS = "ACGTNRYSWKMBDHV"
_DEMO_MERGES = [(a, b) for a in "ACGT" for b in "ACGT"] + [
    ("AA", "AA"),
    ("TT", "TT"),
    ("AC", "GT"),
    ("CA", "TG"),
    ("GG", "CC"),
]


def build_demo_dnabert(
    seed: int, *, num_attention_heads: int = 4
) -> tuple[DnabertS, tokenizers.Tokenizer]:
    """A tiny DNABERT-S with random weights and a hand-made BPE tokenizer, for tests and demos.
    The same seed gives the same bytes."""
    tokenizer = _demo_tokenizer()
    hidden = 8 * num_attention_heads
    config = DnabertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=num_attention_heads,
        intermediate_size=2 * hidden,
    )
    # The default initialisation draws from the global generator: leave it as it was.
    with torch.random.fork_rng(devices=[]):
        module = DnabertS(config)
    _randomize(module, torch.Generator().manual_seed(seed))
    return module.eval().requires_grad_(False), tokenizer


def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Weights of a realistic scale, so that attention is far from uniform and a bug shows."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith(("LayerNorm.weight", "layernorm.weight")):
                value = 1 + 0.1 * noise
            elif name.endswith("bias"):
                value = 0.1 * noise
            elif "embeddings" in name:
                value = noise
            else:  # a Linear weight: unit-variance inputs give unit-variance outputs
                value = noise * parameter.shape[1] ** -0.5
            parameter.copy_(value)


def _demo_tokenizer() -> tokenizers.Tokenizer:
    """Laid out like DNABERT-2's tokenizer.json: BPE, [UNK] for unknown letters, and a
    post-processor wrapping every sequence in [CLS] ... [SEP]."""
    merged = [a + b for a, b in _DEMO_MERGES]
    vocab = {token: i for i, token in enumerate([*_SPECIAL_TOKENS, *_DEMO_LETTERS, *merged])}
    tokenizer = tokenizers.Tokenizer(models.BPE(vocab, _DEMO_MERGES, unk_token="[UNK]"))
    tokenizer.add_special_tokens(list(_SPECIAL_TOKENS))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(token, vocab[token]) for token in ("[CLS]", "[SEP]")],
    )
    return tokenizer
