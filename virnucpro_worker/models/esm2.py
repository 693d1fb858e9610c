"""ESM-2 loading the way users have it: a fair-esm model name or a local checkpoint file.

Checkpoints are fair-esm's `{"cfg": {"model": Namespace}, "model": state_dict}` files. They are
read with `torch.load(weights_only=True)` and an allow-list of one class (argparse.Namespace),
never unpickled blindly; fair-esm's own loader would unpickle anything.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from esm.data import Alphabet
from esm.model.esm2 import ESM2

from ..attention.rotary import apply_rotary, rotary_tables
from ..errors import UserError
from ..files import atomic_write, sha256_started
from ..timing import Stopwatch
from .meta import uninitialised
from .model_files import DEMO_MARK
from .safe_load import load_weights

log = logging.getLogger(__name__)

DEFAULT_ESM = "esm2_t36_3B_UR50D"
MAX_RESIDUES = 1024  # the original's truncation_seq_length
_DOWNLOAD_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt"
_KEY_PREFIX = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")
_OPTIONAL_KEYS = {"contact_head.regression.weight", "contact_head.regression.bias"}


@dataclass
class Esm2Model:
    module: ESM2
    alphabet: Alphabet
    path: Path | None
    # The checkpoint's sha256: a Future while a thread still hashes the file (5.6 GB take a
    # core seconds, which run beside the first blocks instead of before them).
    checksum: str | Future[str]
    demo: bool = False
    load_seconds: dict[str, float] = field(default_factory=dict)  # read, build, move

    @property
    def sha256(self) -> str:
        return self.checksum if isinstance(self.checksum, str) else self.checksum.result()

    @property
    def num_layers(self) -> int:
        return self.module.num_layers


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A local file as given, else `<torch hub>/checkpoints/<name>.pt`, downloaded if missing."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    name = str(name_or_path)
    if not re.fullmatch(r"esm2_t\d+_\w+", name):
        raise UserError(f"ESM-2 model '{name}': no such file, and not a fair-esm model name")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pt"
    if not cached.is_file():
        log.info("downloading %s to %s", name, cached)
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(_DOWNLOAD_URL.format(name=name), str(cached))
        except Exception as error:  # network errors come in many types
            raise UserError(
                f"ESM-2 model '{name}' is not in {cached.parent} and could not be downloaded "
                f"({error}); pass a local checkpoint file with --esm"
            ) from None
    return cached


def _read_checkpoint(path: Path, mapped: bool = False) -> Mapping[str, Any]:
    """`mapped`: memory-mapped, for weights that are only copied to a GPU."""
    expected = "a fair-esm ESM-2 checkpoint"
    checkpoint = load_weights(path, expected, [argparse.Namespace], mmap=mapped)
    if not isinstance(checkpoint, Mapping):
        kind = type(checkpoint).__name__
        raise UserError(f"{path}: not a fair-esm ESM-2 checkpoint: it holds a {kind}")
    return checkpoint


def _config_value(config: Any, key: str) -> Any:
    return config[key] if isinstance(config, Mapping) else getattr(config, key)


def load_esm2(
    name_or_path: str | Path = DEFAULT_ESM,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
) -> Esm2Model:
    """The checkpoint's weights on `device` in `dtype`, at about the speed of reading the file:
    the network is built without initialising its weights (fair-esm's random initialisation
    of 3B weights took half a minute, only to be overwritten: models/meta.py), takes the
    checkpoint tensors as they are (memory-mapped, for a GPU), and they go to the device in the
    checkpoint's dtype and are cast there; a thread hashes the file meanwhile, and goes on
    while the model runs (`Esm2Model.sha256` waits for it). Each value is
    rounded once, from the checkpoint's dtype to `dtype`, as before."""
    path = resolve_checkpoint(name_or_path)
    clock = Stopwatch()
    digest = sha256_started(path)  # hashed while the file is read
    data = _read_checkpoint(path, mapped=device.type == "cuda")
    clock.lap("read")
    try:
        config = data["cfg"]["model"]
        with uninitialised():
            module = ESM2(
                num_layers=_config_value(config, "encoder_layers"),
                embed_dim=_config_value(config, "encoder_embed_dim"),
                attention_heads=_config_value(config, "encoder_attention_heads"),
                alphabet=Alphabet.from_architecture("ESM-1b"),
                token_dropout=_config_value(config, "token_dropout"),
            )
        state = {_KEY_PREFIX.sub("", key): value for key, value in data["model"].items()}
    except (KeyError, AttributeError, TypeError) as error:
        raise UserError(f"{path}: not a fair-esm ESM-2 checkpoint (missing {error})") from None
    _check_state(module, state, path)
    missing, _ = module.load_state_dict(state, strict=False, assign=True)
    _zero(module, missing)
    clock.lap("build")
    module = module.eval().requires_grad_(False).to(device).to(dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    clock.lap("move")
    demo = data.get(DEMO_MARK) is True
    return Esm2Model(module, module.alphabet, path, digest, demo, clock.seconds)


def _check_state(module: ESM2, state: Mapping[str, Any], path: Path) -> None:
    expected = module.state_dict()
    problems = sorted(expected.keys() - state.keys() - _OPTIONAL_KEYS)
    problems += sorted(state.keys() - expected.keys())
    problems += [
        f"{key} {tuple(state[key].shape)}"
        for key in sorted(expected.keys() & state.keys())
        if not isinstance(state[key], torch.Tensor) or state[key].shape != expected[key].shape
    ]
    if problems:
        raise UserError(f"{path}: weights do not fit ESM-2 (keys: {', '.join(problems[:5])})")


def _zero(module: ESM2, names: list[str]) -> None:
    """The contact head's regression, absent from checkpoints published without it, is never
    used here: zeros rather than fair-esm's random values or uninitialised memory."""
    with torch.no_grad():
        for name in names:
            module.get_parameter(name).zero_()


def _fp32_rotary(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fair-esm's RotaryEmbedding.forward on [batch*heads, length, head_dim], with fp32 tables."""
    cos, sin = rotary_tables(torch.arange(k.shape[-2], device=k.device), k.shape[-1])
    return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)


def use_fp32_rotary(module: ESM2) -> None:
    """In fp16/bf16, fair-esm casts its rotary frequencies with the weights and builds cos/sin
    in that precision; give every layer fp32 tables instead (fp32 results are unchanged)."""
    for layer in module.layers:
        layer.self_attn.rot_emb.forward = _fp32_rotary


def save_checkpoint(module: ESM2, path: Path, demo: bool = False) -> None:
    """Write `module` in fair-esm's checkpoint layout (used for demo and test models)."""
    config = argparse.Namespace(
        encoder_layers=module.num_layers,
        encoder_embed_dim=module.embed_dim,
        encoder_attention_heads=module.attention_heads,
        token_dropout=module.token_dropout,
    )
    state = {f"encoder.{key}": value for key, value in module.state_dict().items()}
    checkpoint = {"cfg": {"model": config}, "model": state}
    if demo:
        checkpoint[DEMO_MARK] = True
    with atomic_write(Path(path), "wb") as handle:
        torch.save(checkpoint, handle)
