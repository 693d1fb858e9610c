"""The Python API's entry point: `load_models`, with the command line's defaults and settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..settings import load_settings
from .loading import load_predictor

if TYPE_CHECKING:
    import torch

    from ..pipeline.predictor import Predictor

log = logging.getLogger(__name__)


def load_models(
    esm: str | Path | None = None,
    dnabert: str | Path | None = None,
    classifier: str | Path | None = None,
    *,
    models: str | Path | None = None,
    demo: bool = False,
    attention: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | None = None,
    config: str | Path | None = None,
) -> Predictor:
    """Load a model set once; predict with the returned `Predictor` as often as needed.

    The model files are given as three paths (`esm` may also be a fair-esm model name), as a
    model folder (`models`), or `demo=True` for the tiny built-in models (meaningless
    predictions). Unset arguments come, as for the command line, from `VIRNUCPRO_*` environment
    variables and the config file (`config`, else $VIRNUCPRO_CONFIG, else
    ~/.config/virnucpro/config.toml). `device` is e.g. "cpu" or "cuda:1", `dtype` one of
    "fp32", "fp16", "bf16".
    """
    options = {
        "esm": esm,
        "dnabert": dnabert,
        "classifier": classifier,
        "models": models,
        "demo_models": demo or None,
        "attention": attention,
        "device": None if device is None else _device_text(device),
        "dtype": dtype,
        "config": None if config is None else str(config),
    }
    from ..pipeline.outputs import DEMO_WARNING

    predictor = load_predictor(load_settings(options, os.environ))
    if predictor.demo:  # once, here: the command line says it with each run instead
        log.warning(DEMO_WARNING)
    return predictor


def _device_text(device: object) -> str:
    if isinstance(device, str):
        return device
    if type(device).__name__ == "device":  # a torch.device, without importing torch here
        return str(device)
    raise UserError(f"device must be a string such as 'cuda:1', not {type(device).__name__}")
