"""Sequence preparation: FASTA -> chunks -> six-frame translation -> kept frames.

Byte-identical to the original VirNucPro (docs/ALGORITHM.md 2-4), streaming record by record.
"""
