"""The study contract: a study computes named, resumable sections and returns a `Report`;
one runner (`run`) prepares its folder and writes every file the same way.

A study is a function ``(config, sections) -> Report``. ``sections(name, compute)`` returns
the JSON result of a finished section (``<folder>/<name>.json``) or computes it and writes
it atomically, so a killed study resumes after its last finished section. The runner:
1. loads and checks the study's data, if it has a loader (`Study.load_data`), then checks the folder
   (`reporting.start_workdir`: ``config.json`` and ``data.json``; a different config or
   other data is refused);
2. runs the study, its automatic mask widths floored at ``config.mask_min_bits``
   (`dropjax.masks.automatic_min_bits`);
3. writes ``results.md``, ``results.csv``, ``metrics.json``, the figures and any other tables,
   each atomically;
4. refuses a summary holding NaN or infinity (`reporting.check_finite_metrics`), after
   writing, so that the files show what went wrong.

`scripts/reproduce.py` copies the files into ``results/`` and refreshes the docs' blocks.

Example (a study of three lines)::

  def train_and_evaluate(config, sections):
    value = sections("value", lambda: {"x": config.seed + 1})
    return Report(summary=value, markdown=f"x = {value['x']}\\n")

  STUDY = Study("toy", train_and_evaluate)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from dropjax import io, masks
from dropjax.summaries import ScalarWriter
from dropjax.train import EpochHook, WriteScalars
from experiments import config_checks, reporting

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Report:
  """What a study returns; `write_report` turns it into files.

  Attributes:
    summary: the study's numbers (JSON values): ``metrics.json``, and what `run` returns.
    markdown: ``results.md``, the report with its tables.
    rows: ``results.csv``, one dict per row of the main table; empty: no file.
    figures: ``{file name: matplotlib Figure}``, saved as PNG and closed.
    tables: other CSV files, ``{file name: rows}``.
  """

  summary: Mapping[str, Any]
  markdown: str
  rows: Sequence[Mapping[str, Any]] = ()
  figures: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  tables: Mapping[str, Sequence[Mapping[str, Any]]] = dataclasses.field(default_factory=dict)


class Sections:
  """Named, resumable sections of a study, stored as JSON in its folder.

  Args:
    folder: the study's folder; a section named ``"seeds/seed0"`` is
      ``<folder>/seeds/seed0.json``.
    data: what the study's `Study.load_data` returned (None without one); loaded once, by
      the runner.
  """

  def __init__(self, folder: str, data: Any = None):
    self.folder, self.data = folder, data

  def path(self, name: str) -> str:
    """Where the section ``name`` is stored."""
    return os.path.join(self.folder, f"{name}.json")

  def __call__(self, name: str, compute: Callable[[], T]) -> T:
    """The stored result of section ``name``, or ``compute()``, stored atomically.

    While ``compute`` runs, `curve_hooks` and `write_curves` write training curves to
    ``<folder>/curves/<name>`` (TensorBoard event files and ``scalars.jsonl``).
    """
    def run_with_curves():
      token = _CURVES.set(os.path.join(self.folder, "curves", name))
      try:
        return compute()
      finally:
        _CURVES.reset(token)

    return reporting.load_or_compute(self.path(name), run_with_curves)


# The curves folder of the section being computed (None outside one).
_CURVES: contextvars.ContextVar[str | None] = contextvars.ContextVar("curves", default=None)


def curves_folder(name: str = "") -> str | None:
  """The folder where the running section writes its curves (``name``: a subfolder), or
  None outside a section."""
  folder = _CURVES.get()
  return None if folder is None else os.path.join(folder, name)


def curve_hooks(name: str = "") -> list[EpochHook]:
  """``[WriteScalars]`` into the running section's curves folder, for `dropjax.train.fit`'s
  ``epoch_hooks``: per-epoch loss (and validation NLL) of every run a study trains. Empty
  outside a section, so a run function also works alone."""
  folder = curves_folder(name)
  return [] if folder is None else [WriteScalars.to_folder(folder)]


def write_curves(series: Mapping[str, Sequence[float]], name: str = "",
                 steps: Sequence[int] | None = None) -> None:
  """Writes per-epoch series computed in one program (vmapped or scanned training) to the
  running section's curves folder; step ``i`` is ``steps[i]`` (default: 1, 2, ...)."""
  folder = curves_folder(name)
  if folder is None:
    return
  with contextlib.closing(ScalarWriter(folder)) as writer:
    length = len(next(iter(series.values()))) if series else 0
    for i, step in enumerate(steps if steps is not None else range(1, length + 1)):
      writer.write_scalars(int(step), {tag: float(np.asarray(values[i]))
                                       for tag, values in series.items()})


# The mesh axis over which a study shards its models (splits x grid points, runs).
MODEL_AXIS = "models"


def model_mesh(config: ml_collections.ConfigDict) -> Mesh | None:
  """The one-axis mesh (`MODEL_AXIS`) of the first ``config.devices`` local devices (0: all
  of them) over which a study shards its models; None for one device, which keeps the
  unsharded program.

  Raises:
    config_checks.ConfigError: ``config.devices`` exceeds the local devices.
  """
  local = jax.local_devices()
  if config.devices > len(local):
    raise config_checks.ConfigError(
        f"config.devices = {config.devices}: this process has {len(local)} devices; use 0 "
        f"(all of them) or 1 to {len(local)}.")
  count = config.devices or len(local)
  return None if count == 1 else Mesh(np.asarray(local[:count]), (MODEL_AXIS,))


def shard_models(fn: Callable[..., Any], mesh: Mesh | None) -> Callable[..., Any]:
  """``fn(models, *shared)`` with the leading (model) axis of ``models`` sharded over ``mesh``.

  ``fn`` maps a pytree ``models`` whose leaves share a leading model axis, each model
  independent of the others, to outputs with the same leading axis; ``shared`` is
  replicated. The models are padded to a multiple of the mesh size with copies of the
  last one, whose outputs are dropped, so any model count runs on any mesh. A model's keys,
  and so its masks, do not depend on the mesh. Without a mesh, ``fn`` itself.

  Args:
    fn: the per-block program (typically vmapped or ``lax.map``-ped over the models).
    mesh: a `model_mesh`, or None.

  Returns:
    A function with ``fn``'s signature, to call inside ``jax.jit``.
  """
  if mesh is None:
    return fn
  size = mesh.shape[MODEL_AXIS]

  def sharded(models, *shared):
    count = jax.tree.leaves(models)[0].shape[0]
    pad = -count % size
    padded = jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]),
                          models)
    # check_vma off: NNX reseeding writes a constant RNG count into each model's state,
    # which the varying-axis check reads as a carry that stops varying over the models.
    out = jax.shard_map(fn, mesh=mesh, in_specs=(P(MODEL_AXIS), *[P()] * len(shared)),
                        out_specs=P(MODEL_AXIS), check_vma=False)(padded, *shared)
    return jax.tree.map(lambda a: a[:count], out)

  return sharded


@dataclasses.dataclass(frozen=True)
class Study:
  """A registered study.

  Attributes:
    name: the value of ``config.study`` that selects it.
    train_and_evaluate: ``(config, sections) -> Report``.
    subfolder: ``config -> name`` of the folder inside the workdir where one run lives
      (the UCI studies keep one per dataset in a shared workdir); None: the workdir itself.
    load_data: ``config -> data``: loads the data and runs the checks that need it (for
      example that a batch size divides the test set; raises ValueError). The runner calls
      it before the folder records the config, so that a corrected config is not refused
      as another run's, and hands its result to the study as ``sections.data``.
  """

  name: str
  train_and_evaluate: Callable[[ml_collections.ConfigDict, Sections], Report]
  subfolder: Callable[[ml_collections.ConfigDict], str] | None = None
  load_data: Callable[[ml_collections.ConfigDict], Any] | None = None

  def folder(self, config: ml_collections.ConfigDict, workdir: str) -> str:
    """The folder of the run of ``config`` under ``workdir``."""
    return workdir if self.subfolder is None else os.path.join(workdir, self.subfolder(config))


def write_report(folder: str, report: Report) -> None:
  """Writes every file of ``report`` into ``folder``, each atomically."""
  io.write_text_atomic(os.path.join(folder, "results.md"), report.markdown)
  io.write_json_atomic(os.path.join(folder, "metrics.json"), report.summary)
  if report.rows:
    io.write_csv_atomic(os.path.join(folder, "results.csv"), report.rows)
  for name, rows in report.tables.items():
    io.write_csv_atomic(os.path.join(folder, name), rows)
  for name, fig in report.figures.items():
    reporting.save_figure(fig, os.path.join(folder, name))


def run(study: Study, config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs ``study`` under ``config`` in ``workdir`` and writes its report.

  Args:
    study: the registered study.
    config: its config (already checked by `config_checks.check_config`).
    workdir: the workdir; the run lives in ``study.folder(config, workdir)``.

  Returns:
    The report's summary.

  Raises:
    ValueError: the folder holds a run with another config or on other data.
    reporting.NonFiniteMetricError: the summary holds NaN or infinity.
  """
  folder = study.folder(config, workdir)
  data = None if study.load_data is None else study.load_data(config)
  reporting.start_workdir(config, folder)
  with masks.automatic_min_bits(config.mask_min_bits):
    report = study.train_and_evaluate(config, Sections(folder, data))
  write_report(folder, report)
  print(report.markdown)
  reporting.check_finite_metrics(report.summary, study=f"Study {study.name!r} in {folder}")
  return dict(report.summary)
