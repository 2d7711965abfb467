"""Datasets: the embedded default (handwritten digits) needs no download and no data dir."""

from dropjax.data.digits import Split, SplitDataset, load_digits

__all__ = ["Split", "SplitDataset", "load_digits"]
