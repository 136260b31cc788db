"""Multi-view evaluation (paper §4.1): view predictions, per-video aggregation, metrics, results files."""
