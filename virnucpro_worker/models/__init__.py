"""The three models: ESM-2 (protein), DNABERT-S (nucleotide) and the MLP classifier."""
