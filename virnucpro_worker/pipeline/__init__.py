"""FASTA in, predictions out: batching across records, embedding, scoring, result files."""
