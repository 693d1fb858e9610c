"""Attention backends: a pluggy hookspec, the registry, packed-sequence kernels and packing."""
