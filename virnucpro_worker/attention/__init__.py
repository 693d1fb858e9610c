"""Attention backends: a pluggy hookspec, the registry, packed-sequence kernels and packing, and
the fused residual-add + LayerNorm and GELU kernels both encoders share."""
