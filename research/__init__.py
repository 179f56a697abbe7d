"""One-off studies of the model and the metrics (not packaged). Each writes its record under
docs/research/; run them from the repository root, e.g. ``python -m research.copy_tradeoff``."""
