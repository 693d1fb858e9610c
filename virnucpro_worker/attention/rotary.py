"""ESM-2's rotary position embeddings (fair-esm's half-split convention), always in fp32."""

from __future__ import annotations

import torch

ROTARY_BASE = 10000.0


def rotary_tables(positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [positions, head_dim] in fp32: tables built in bf16 are badly wrong
    (docs/ALGORITHM.md 5.3). The second half of each row repeats the first, as in fair-esm."""
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32)
    inverse_frequency = 1.0 / (ROTARY_BASE ** (exponents / head_dim))
    angles = positions.float()[:, None] * inverse_frequency[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` in fp32; the result keeps x's dtype."""
    x32 = x.float()
    return (x32 * cos + _rotate_half(x32) * sin).to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)
