"""Sequence preparation: FASTA -> chunks -> six-frame translation -> kept frames.

Byte-identical to the original VirNucPro (see REFERENCE section 1), streaming record by record.
"""
