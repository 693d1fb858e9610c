"""A DNABERT-S folder as Hugging Face lays it out (config.json, the weights, tokenizer.json),
read without its remote code into the network of dnabert.py, and written back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import tokenizers
import torch
from torch import nn

from ..errors import UserError, first_line
from ..files import atomic_write, sha256_started
from .dnabert import DnabertConfig, DnabertS
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
