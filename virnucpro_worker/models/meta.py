"""Networks built without initialising their weights, for a checkpoint to fill
(`load_state_dict(assign=True)`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

import torch
from torch import nn

# Every in-place initialiser torch's layers call while they are built.
_INITIALISERS = [name for name in dir(nn.init) if name.endswith("_") and not name.startswith("_")]


@contextlib.contextmanager
def uninitialised() -> Iterator[None]:
    """Layers built inside keep the memory `torch.empty` gave them, never written and so never
    paged in: fair-esm's random initialisation of 3B weights took half a minute, to fill values
    that the checkpoint replaces. (Not the meta device: there even `arange` and `normal_` run
    as Python decompositions that import torch's compiler, seconds more.)"""
    with contextlib.ExitStack() as stack:
        for name in _INITIALISERS:
            stack.enter_context(mock.patch.object(nn.init, name, _untouched))
        yield


def _untouched(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return tensor
