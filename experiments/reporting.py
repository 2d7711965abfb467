"""Workdir and report helpers shared by the studies."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from dropjax import io
from dropjax.data import idx, uci
from dropjax.data.paths import resolve_data_dir

# Fields that change how a run executes but not what it computes (MC samples are keyed by
# their index, training segments by their epoch, each model by its own keys whatever device
# it runs on; the data is compared by content, in data.json), so a resumed run may change
# them. The numbers agree up to float rounding (reduction order, XLA's fusion choices).
EXECUTION_FIELDS = ("mc_chunk_size", "mc_vectorize", "segment_epochs", "data_dir", "devices",
                    "timing_steps", "timing_repeats")
# Fields added after runs were recorded, with the value those runs had: a config.json
# without one of them recorded a run made with that value.
FIELDS_ADDED_LATER = {"mask_min_bits": 8, "prng_impl": "threefry2x32"}


def data_fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """What data ``config`` reads: its data dir and the SHA-256 of every file used.

  Args:
    config: a study config; its ``dataset`` (a UCI name, ``"mnist"`` or ``"digits"``)
      and ``data_dir`` say what is read.

  Returns:
    ``{"data_dir": ..., "files": {name: sha256}}``; None for studies without a dataset
    (synthetic data is a function of the config).
  """
  dataset = config.get("dataset")
  data_dir = config.get("data_dir") or None
  if dataset == "digits":
    from sklearn.datasets import load_digits

    digits = load_digits()
    digest = hashlib.sha256(np.ascontiguousarray(digits.data).tobytes()
                            + np.ascontiguousarray(digits.target).tobytes()).hexdigest()
    return {"data_dir": "(embedded in scikit-learn)", "files": {"sklearn/digits": digest}}
  if dataset == "mnist":
    files = idx.idx_sha256("mnist", data_dir)
  elif dataset in uci.UCI_DATASETS or dataset in uci.ALIASES:
    name = uci.canonical_name(dataset)
    files = {f"uci/{name}/{rel}": digest
             for rel, digest in uci.uci_file_sha256(name, data_dir).items()}
  else:
    return None
  return {"data_dir": os.path.abspath(resolve_data_dir(data_dir, dataset)), "files": files}


def _check_same_data(workdir: str, previous: Mapping[str, Any], current: Mapping[str, Any]):
  old, new = previous.get("files", {}), current["files"]
  differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  if differ:
    shown = "; ".join(f"{k}: SHA-256 {str(old.get(k, 'absent'))[:12]} then, "
                      f"{str(new.get(k, 'absent'))[:12]} now" for k in differ[:5])
    more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
    raise ValueError(
        f"{workdir} holds a run on other data: it was started on the data in "
        f"{previous.get('data_dir')} (recorded in {os.path.join(workdir, 'data.json')}), this "
        f"run reads {current['data_dir']}, and {len(differ)} files differ ({shown}{more}). "
        "Resuming would mix results of both. Point DROPJAX_DATA_DIR / --config.data_dir at "
        "the original data, or use a new --workdir (or delete the old one)."
    )


def start_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Creates ``workdir`` and records the config and the data; refuses to resume otherwise.

  ``config.json`` records the config: only the `EXECUTION_FIELDS` may differ from it (the
  new values are kept); a field of `FIELDS_ADDED_LATER` missing from it holds the value
  runs had before the field existed. ``data.json`` records the data read (`data_fingerprint`): the
  SHA-256 of every file must match, wherever the data dir now is. A workdir recorded
  before ``data.json`` existed is accepted, and its data recorded from now on.

  Args:
    config: the study config.
    workdir: the study's folder.

  Raises:
    ValueError: the workdir holds a run with another config or on other data (naming
      the fields, or both data dirs and the differing files).
  """
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort(sort_keys=True))
  if os.path.exists(path):
    with open(path) as f:
      previous = FIELDS_ADDED_LATER | json.load(f)
    changed = sorted(k for k in set(previous) | set(current)
                     if previous.get(k) != current.get(k) and k not in EXECUTION_FIELDS)
    if changed:
      raise ValueError(
          f"{workdir} holds a run with a different config (fields {changed}): recorded "
          f"{ {k: previous.get(k) for k in changed} }, now { {k: current.get(k) for k in changed} }"
          "; resuming would mix results. Use a new --workdir or delete the old one."
      )
  data = data_fingerprint(config)
  data_path = os.path.join(workdir, "data.json")
  previous_data = load_json(data_path)
  if data is not None and previous_data is not None:
    _check_same_data(workdir, previous_data, data)
  os.makedirs(workdir, exist_ok=True)
  io.write_json_atomic(path, current)
  if data is not None:
    io.write_json_atomic(data_path, data)


class NonFiniteMetricError(ValueError):
  """A study reported a NaN or infinite metric."""


# Published or reference numbers sit beside ours; a NaN there means "not published".
_NOT_COMPUTED = ("published", "reference", "paper")
# Keys that say which row (split, model, ...) a list item is.
_ROW_KEYS = ("split", "dataset", "model", "method", "variant", "function", "score", "n", "seed",
             "angle", "rate", "k")


def non_finite_metrics(metrics: Any, path: str = "metrics") -> list[tuple[str, float]]:
  """``(where, value)`` of every NaN or infinite number in a study's returned metrics.

  Args:
    metrics: nested dicts, lists and numbers (a study report's summary).
    path: the name of the root, for the locations.

  Returns:
    E.g. ``[("metrics.rows[1] (split=1).log_likelihood", nan)]``; fields named
    ``published*``, ``reference*`` or ``paper*`` (numbers from papers) are skipped.
  """
  if isinstance(metrics, np.ndarray):
    metrics = metrics.tolist()
  if isinstance(metrics, Mapping):
    found = []
    for key, value in metrics.items():
      if not str(key).startswith(_NOT_COMPUTED):
        found += non_finite_metrics(value, f"{path}.{key}")
    return found
  if isinstance(metrics, list | tuple):
    found = []
    for i, item in enumerate(metrics):
      label = ""
      if isinstance(item, Mapping):
        ids = [f"{k}={item[k]}" for k in _ROW_KEYS if k in item]
        label = f" ({', '.join(ids)})" if ids else ""
      found += non_finite_metrics(item, f"{path}[{i}]{label}")
    return found
  if isinstance(metrics, float | np.floating) and not math.isfinite(metrics):
    return [(path, float(metrics))]
  return []


def check_finite_metrics(metrics: Any, study: str = "the study") -> None:
  """Refuses a study result holding NaN or infinity, naming each metric and its split.

  Args:
    metrics: a study report's summary (`experiments.study.Report`).
    study: the study's name, for the message.

  Raises:
    NonFiniteMetricError: listing where (``metrics.rows[1] (split=1).log_likelihood``).
  """
  found = non_finite_metrics(metrics)
  if found:
    shown = "; ".join(f"{where} = {value}" for where, value in found[:10])
    more = f" (and {len(found) - 10} more)" if len(found) > 10 else ""
    raise NonFiniteMetricError(
        f"{study} reported {len(found)} non-finite metrics: {shown}{more}. A diverged "
        "training run or bad data; the results in the workdir are not to be trusted."
    )


def mean_se(values) -> list[float]:
  """``[mean, standard error]`` over the values (population std / sqrt(n), as the UCI
  reference code reports)."""
  values = np.asarray(values, np.float64)
  return [float(values.mean()), float(values.std() / np.sqrt(len(values)))]


def seed_statistics(values) -> tuple[float, float]:
  """``(mean, standard error)`` over seeds: the sample std (ddof=1) / sqrt(n).

  Needs two seeds or more: one seed has no spread to report.
  """
  values = np.asarray(values, np.float64)
  if values.size < 2:
    raise ValueError(f"A standard error needs at least 2 seeds; got {values.size}.")
  return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def paired_difference(a, b) -> tuple[float, float]:
  """``(mean, standard error)`` of ``a - b`` paired by seed (seed i of both shares its
  initial weights and data order, so their difference cancels that noise)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"Paired values need the same seeds; got {a.shape} and {b.shape}.")
  return seed_statistics(a - b)


def paired_error_difference(wrong_a, wrong_b) -> dict[str, float]:
  """The error rate of classifier a minus b's on the same test items, with its s.e.

  Paired over items (McNemar's setting): only the discordant items, b = a wrong where b
  is right and c = the reverse, carry the difference, ``(b - c) / n``. The standard error
  is that of the mean of the per-item differences (values -1, 0, 1), ``sqrt((b + c -
  (b - c)**2 / n) / (n - 1)) / sqrt(n)``.

  Args:
    wrong_a, wrong_b: ``(n,)`` booleans, whether each item is misclassified.

  Returns:
    ``{"difference", "se", "a_only", "b_only"}`` (rates, and the discordant counts).
  """
  a, b = np.asarray(wrong_a, bool), np.asarray(wrong_b, bool)
  if a.shape != b.shape or a.ndim != 1 or a.size < 2:
    raise ValueError(f"wrong_a and wrong_b must be (n,) with the same n >= 2; got shapes "
                     f"{a.shape} and {b.shape}.")
  per_item = a.astype(np.float64) - b
  return {"difference": float(per_item.mean()),
          "se": float(per_item.std(ddof=1) / np.sqrt(a.size)),
          "a_only": int(np.sum(a & ~b)), "b_only": int(np.sum(~a & b))}


def exceeds_two_se(mean: float, se: float) -> bool:
  """Whether a difference is decided: its mean is more than 2 standard errors from 0."""
  return abs(mean) > 2 * se


def format_mean_se(mean: float, se: float, spec: str = ".4f") -> str:
  """``"mean ± se"``; a ``+`` in ``spec`` signs the mean only."""
  return f"{format(mean, spec)} ± {format(se, spec.replace('+', ''))}"


def chance_of_two_se(num_seeds: int) -> float:
  """How often a difference with no true effect exceeds 2 standard errors over
  ``num_seeds`` seeds: the two-sided tail of Student's t with ``num_seeds - 1`` degrees of
  freedom at 2 (0.12 for 5 seeds, against 0.046 for a normal)."""
  from scipy import stats

  return float(2 * stats.t.sf(2.0, num_seeds - 1))


def load_json(path: str) -> Any | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def load_or_compute(path: str, compute: Callable[[], Any]) -> Any:
  """The JSON at ``path`` if a previous run finished it; else ``compute()``, written
  atomically there (so a resumed study skips what is done)."""
  result = load_json(path)
  if result is None:
    result = compute()
    io.write_json_atomic(path, result)
  return result


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]
) -> str:
  """``columns`` are ``(key, header, format spec)``; a missing value prints as a dash."""
  lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  for row in rows:
    cells = []
    for key, _, spec in columns:
      value = row.get(key)
      cells.append("-" if value is None else format(value, spec))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def mean_se_cells(rows: Sequence[Mapping[str, Any]], measures: Sequence[str],
                  spec: str = ".4f") -> list[dict[str, Any]]:
  """Rows with ``"mean ± se"`` strings for each of ``measures`` (from ``m`` and ``m_se``),
  and, where a row has a paired difference ``d_m``, that too with a ``*`` when decided."""
  out = []
  for r in rows:
    cells = dict(r)
    for m in measures:
      cells[m] = format_mean_se(r[m], r[f"{m}_se"], spec)
      if f"d_{m}" in r:
        mark = "*" if r[f"d_{m}_decided"] else ""
        cells[f"d_{m}"] = format_mean_se(r[f"d_{m}"], r[f"d_{m}_se"], "+" + spec) + mark
    out.append(cells)
  return out


def protocol_table(rows: Sequence[Mapping[str, str]]) -> str:
  """A study's protocol table, ``| setting | ours | reference | source |``.

  Args:
    rows: one per setting that matters, each with the keys ``setting``, ``ours`` (from the
      config that ran), ``reference`` and ``source`` (file and line of the reference code,
      or the paper's section).
  """
  return markdown_table(rows, (("setting", "setting", "s"), ("ours", "ours", "s"),
                               ("reference", "reference", "s"), ("source", "source", "s")))


def pyplot():
  """``matplotlib.pyplot`` on the non-interactive Agg backend (imported only to plot)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig, path: str) -> None:
  """Lays out ``fig``, writes it as a PNG atomically and closes it."""
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100)
  pyplot().close(fig)
  os.replace(tmp, path)
