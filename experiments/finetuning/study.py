"""The fine-tuning study: which dropout a small fine-tuning run should use.

1. Pretrain a `TransformerClassifier` (image rows as tokens) on ``config.pretrain_classes``.
2. For every training size, seed and method (``"full"``: every weight trains; ``"lora"``:
   `dropjax.layers.add_lora` on each block's qkv, out, ffn1 and ffn2, all else frozen but a
   new head), fine-tune on a balanced draw of ``config.finetune_classes``: one
   `dropjax.train.fit_ensemble` program over the grid of rates. Every grid point of a run
   starts from the same key, so they share the head's initialisation, the LoRA factors,
   the batch order and the uniform draws behind the masks: only the rates differ, and a
   setting's difference to no dropout is paired within the run and then over seeds.
3. Time a training step of every setting with concrete rates (dropout absent at 0).

Workdir: ``pretrained/`` (the checkpoint), ``pretrain.json``, ``runs/<method>/n<size>/
seed<i>.json`` (resumable per run), ``timing.json``, ``results.md``, ``finetuning.png``.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from dropjax import layers, metrics, prng
from dropjax.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from dropjax.data import Split
from dropjax.models import LORA_TARGETS, TransformerClassifier
from dropjax.train import (
    cross_entropy_loss,
    ensemble_member,
    fit_ensemble,
    init_train_state,
    model_loss_fn,
    train_step,
)
from experiments import config_checks, datasets, reporting, study

METHODS = ("full", "lora")
METRICS = ("error", "nll", "ece")
# Key streams under prng.key(config.seed, config.prng_impl).
_PRETRAIN, _FINETUNE = 0, 1


def classes_of(split: Split, classes) -> Split:
  """The images of ``classes``, relabelled ``0..len(classes) - 1`` in that order."""
  classes = np.asarray(classes)
  keep = np.isin(split.labels, classes)
  relabel = np.searchsorted(np.sort(classes), split.labels[keep])
  order = np.argsort(classes)
  return Split(split.images[keep], order[relabel].astype(np.int32))


def balanced_draw(split: Split, size: int, key: jax.Array) -> Split:
  """``size / C`` images of each of the C classes, drawn without replacement."""
  classes = np.unique(split.labels)
  per_class = size // len(classes)
  chosen = []
  for c in classes:
    where = np.flatnonzero(split.labels == c)
    if len(where) < per_class:
      raise ValueError(f"class {c} has {len(where)} training images; a draw of {size} needs "
                       f"{per_class} per class.")
    pick = jax.random.choice(jax.random.fold_in(key, int(c)), len(where), (per_class,),
                             replace=False)
    chosen.append(where[np.asarray(pick)])
  index = np.sort(np.concatenate(chosen))
  return Split(split.images[index], split.labels[index])


def build_model(config, num_classes: int, image_shape, *, attention_rate: Any, ffn_rate: Any,
                other_rate: Any, rngs: nnx.Rngs) -> TransformerClassifier:
  rows, width = image_shape[0], int(np.prod(image_shape[1:]))
  return TransformerClassifier(width, num_classes, max_length=rows, features=config.features,
                               num_heads=config.num_heads, num_blocks=config.num_blocks,
                               embedding_rate=other_rate, attention_rate=attention_rate,
                               ffn_rate=ffn_rate, residual_rate=other_rate, rngs=rngs)


def _body(params: nnx.State) -> nnx.State:
  """Every pretrained parameter but the head's (a new task gets a new head)."""
  return nnx.from_flat_state(
      [(path, value) for path, value in nnx.to_flat_state(params) if path[0] != "head"])


def pretrain(config, sections: study.Sections, train: Split, test: Split,
             image_shape) -> tuple[nnx.State, dict[str, Any]]:
  """The pretrained parameters (from the workdir's checkpoint once trained) and a summary."""
  num_classes = len(config.pretrain_classes)
  path = os.path.join(sections.folder, "pretrained")

  def make(rngs):
    return build_model(config, num_classes, image_shape, attention_rate=config.pretrain_rate,
                       ffn_rate=config.pretrain_rate, other_rate=config.pretrain_rate,
                       rngs=rngs)

  def compute():
    tic = time.perf_counter()
    key = jax.random.fold_in(prng.key(config.seed, config.prng_impl), _PRETRAIN)
    graphdef, states, history = fit_ensemble(
        make, train, keys=key[None], epochs=config.pretrain_epochs,
        batch_size=min(config.pretrain_batch_size, len(train.labels)),
        learning_rate=config.pretrain_learning_rate)
    model = ensemble_member(graphdef, states, 0)
    save_checkpoint(path, {"params": nnx.state(model, nnx.Param)}, {"study": "finetuning"})
    study.write_curves({"loss": history["loss"][:, 0]}, "pretrain")
    return {**_evaluate(config, model, test), "seconds": time.perf_counter() - tic,
            "train_images": len(train.labels)}

  info = sections("pretrain", compute)
  if not checkpoint_exists(path):
    raise FileNotFoundError(
        f"{sections.path('pretrain')} says pretraining finished, but its checkpoint {path} "
        "is missing: delete that file to pretrain again.")
  template = nnx.state(nnx.eval_shape(lambda: make(nnx.Rngs(0))), nnx.Param)
  trees, _ = load_checkpoint(path, {"params": template})
  return trees["params"], info


def grid(config, method: str) -> list[dict[str, float]]:
  """The method's settings: attention = feed-forward rate, and LoRA's lora_dropout."""
  lora_rates = config.lora_rates if method == "lora" else (0.0,)
  return [{"dropout_rate": float(r), "lora_rate": float(q)}
          for r, q in itertools.product(config.dropout_rates, lora_rates)]


def finetune_model(config, pretrained: nnx.State, method: str, image_shape, *,
                   dropout_rate: Any, lora_rate: Any, rngs: nnx.Rngs) -> nnx.Module:
  """The pretrained body with a new head, rates set, and (for LoRA) adapters added."""
  model = build_model(config, len(config.finetune_classes), image_shape,
                      attention_rate=dropout_rate, ffn_rate=dropout_rate,
                      other_rate=config.other_rate, rngs=rngs)
  nnx.update(model, _body(pretrained))
  if method == "lora":
    layers.add_lora(model, LORA_TARGETS, rank=config.lora_rank, rate=lora_rate,
                    alpha=config.lora_alpha, trainable=("head",), rngs=rngs)
  return model


def _learning_rate(config, method: str) -> float:
  return config.full_learning_rate if method == "full" else config.lora_learning_rate


@nnx.jit
def _probs(model, x):
  return jax.nn.softmax(model(x))


def _evaluate(config, model: nnx.Module, test: Split) -> dict[str, float]:
  model.eval()
  probs = jnp.concatenate([_probs(model, jnp.asarray(test.images[i:i + 1000]))
                           for i in range(0, len(test.labels), 1000)])
  summary = metrics.summary(probs, test.labels, config.ece_bins)
  return {"error": 1.0 - summary["accuracy"], "nll": summary["nll"], "ece": summary["ece"]}


def schedule(config, size: int) -> tuple[int, int]:
  """``(batch size, epochs)`` giving at least ``config.finetune_steps`` steps on ``size``."""
  batch = min(config.batch_size, size)
  per_epoch = size // batch
  return batch, -(-config.finetune_steps // per_epoch)


def finetune_run(config, pretrained: nnx.State, pool: Split, test: Split, image_shape,
                 method: str, size: int, seed: int) -> dict[str, Any]:
  """Every setting of ``method`` on one balanced draw of ``size`` images, one program."""
  tic = time.perf_counter()
  root = jax.random.fold_in(
      jax.random.fold_in(prng.key(config.seed, config.prng_impl), _FINETUNE), seed)
  # The draw depends on (seed, size) only: both methods and every rate see the same images.
  train = balanced_draw(pool, size, jax.random.fold_in(jax.random.fold_in(root, 0), size))
  settings = grid(config, method)
  keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(root, 1), size)] * len(settings))
  hparams = {name: jnp.asarray([s[name] for s in settings]) for name in settings[0]}
  batch, epochs = schedule(config, size)
  graphdef, states, history = fit_ensemble(
      lambda rngs, **hp: finetune_model(config, pretrained, method, image_shape, rngs=rngs,
                                        **hp),
      train, keys=keys, hparams=hparams, epochs=epochs, batch_size=batch,
      learning_rate=_learning_rate(config, method))
  study.write_curves({f"loss/{i}": history["loss"][:, i] for i in range(len(settings))},
                     f"{method}_n{size}_seed{seed}")
  results = [{**s, **_evaluate(config, ensemble_member(graphdef, states, i), test)}
             for i, s in enumerate(settings)]
  return {"method": method, "size": size, "seed": seed, "epochs": epochs,
          "steps": int(history["steps"]), "batch_size": batch, "settings": results,
          "seconds": time.perf_counter() - tic}


def step_times(config, pretrained: nnx.State, pool: Split, image_shape) -> list[dict[str, Any]]:
  """Milliseconds per training step of every setting, built with concrete rates (a rate of
  0 builds no dropout): the best of ``config.timing_repeats`` runs of
  ``config.timing_steps`` steps. Every setting is compiled and warmed up first, and the
  repeats go round the settings in turn, so a slow start or a busy moment of the machine
  does not land on one setting (the first, the baseline, read 1.2x slow otherwise)."""
  batch = min(config.batch_size, len(pool.labels))
  data = (jnp.asarray(pool.images[:batch]), jnp.asarray(pool.labels[:batch]))
  runs = []
  for method in config.methods:
    tx = optax.adam(_learning_rate(config, method))
    for setting in grid(config, method):
      model = finetune_model(config, pretrained, method, image_shape, rngs=nnx.Rngs(0),
                             **setting)
      model.train()
      graphdef, params, rest = nnx.split(model, nnx.Param, ...)
      loss_fn = model_loss_fn(graphdef, cross_entropy_loss)
      step = jax.jit(lambda state, key, loss_fn=loss_fn, tx=tx: train_step(
          state, data, None, key, loss_fn=loss_fn, tx=tx))
      state = init_train_state(params, tx, rest)
      for i in range(3):  # compile, then warm up
        state, _ = step(state, prng.key(i, config.prng_impl))
      runs.append({"method": method, "setting": setting, "step": step,
                   "state": jax.block_until_ready(state), "best": float("inf")})
  for repeat in range(config.timing_repeats):
    for run in runs:
      state = run["state"]
      start = time.perf_counter()
      for i in range(config.timing_steps):
        state, loss = run["step"](
            state, prng.key(repeat * config.timing_steps + i, config.prng_impl))
      jax.block_until_ready(loss)
      run["best"] = min(run["best"], (time.perf_counter() - start) / config.timing_steps)
      run["state"] = state
  # The measurement's own settings travel with it: a resumed study reuses this section.
  out = [{"method": run["method"], **run["setting"], "step_ms": 1e3 * run["best"],
          "device": jax.devices()[0].device_kind, "batch_size": batch,
          "timing_steps": config.timing_steps, "timing_repeats": config.timing_repeats}
         for run in runs]
  for row in out:
    base = next(r for r in out if r["method"] == row["method"] and r["dropout_rate"] == 0
                and r["lora_rate"] == 0)
    row["relative_time"] = row["step_ms"] / base["step_ms"]
  return out


def summarise(config, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Per method, size and setting: mean ± s.e. over seeds, and the paired difference to
  the same method without dropout (``d_<metric>``, decided beyond 2 s.e.)."""
  rows = []
  for method in config.methods:
    for size in config.train_sizes:
      mine = sorted((r for r in runs if r["method"] == method and r["size"] == size),
                    key=lambda r: r["seed"])
      for i, setting in enumerate(grid(config, method)):
        for run in mine:
          stored = {k: run["settings"][i][k] for k in setting}
          if stored != setting:
            raise ValueError(f"{method}, {size} labels, seed {run['seed']}: setting {i} was "
                             f"stored as {stored}, but the grid's is {setting}.")
        row: dict[str, Any] = {"method": method, "size": size, **setting}
        for metric in METRICS:
          values = [r["settings"][i][metric] for r in mine]
          row[metric], row[f"{metric}_se"] = reporting.seed_statistics(values)
          if i:
            base = [r["settings"][0][metric] for r in mine]
            mean, se = reporting.paired_difference(values, base)
            row[f"d_{metric}"], row[f"d_{metric}_se"] = mean, se
            row[f"d_{metric}_decided"] = reporting.exceeds_two_se(mean, se)
        rows.append(row)
  return rows


# The settings practitioners reach for: attention and feed-forward dropout 0.1, and PEFT
# examples' lora_dropout 0.05 (0.1 is the other common value, in the grid too).
COMMON_RATE, COMMON_LORA_RATE = 0.1, 0.05


def common_settings(config, rows) -> list[dict[str, Any]]:
  """The verdict on each common setting in the grid, per training size, from the paired
  differences: ``helps`` / ``hurts`` (beyond 2 s.e.) or ``not decided``, on error and NLL."""
  rate, lora = COMMON_RATE, COMMON_LORA_RATE
  checks = [("full", f"attention/feed-forward dropout {rate:g} (full fine-tuning)",
             {"dropout_rate": rate, "lora_rate": 0.0}),
            ("lora", f"lora_dropout {lora:g} (LoRA, no other dropout)",
             {"dropout_rate": 0.0, "lora_rate": lora}),
            ("lora", f"attention/feed-forward {rate:g} and lora_dropout {lora:g} (LoRA)",
             {"dropout_rate": rate, "lora_rate": lora})]
  out = []
  for method, text, setting in checks:
    if method not in config.methods or setting not in grid(config, method):
      continue
    for size in config.train_sizes:
      row = next(r for r in rows if r["method"] == method and r["size"] == size
                 and r["dropout_rate"] == setting["dropout_rate"]
                 and r["lora_rate"] == setting["lora_rate"])
      verdicts = {}
      for metric in ("error", "nll"):
        d, decided = row[f"d_{metric}"], row[f"d_{metric}_decided"]
        verdicts[metric] = ("helps" if decided and d < 0 else "hurts" if decided
                            else "not decided")
        verdicts[f"{metric}_difference"] = reporting.format_mean_se(
            d, row[f"d_{metric}_se"], "+.4f")
      out.append({"setting": text, "size": size, **verdicts})
  return out


def _plot(config, rows):
  plt = reporting.pyplot()
  fig, axes = plt.subplots(1, len(config.train_sizes), figsize=(5 * len(config.train_sizes), 4),
                           squeeze=False)
  for ax, size in zip(axes[0], config.train_sizes, strict=True):
    for method in config.methods:
      for lora_rate in (config.lora_rates if method == "lora" else (0.0,)):
        sel = [r for r in rows if r["method"] == method and r["size"] == size
               and r["lora_rate"] == lora_rate]
        label = "full" if method == "full" else f"LoRA, lora_dropout {lora_rate:g}"
        ax.errorbar([r["dropout_rate"] for r in sel], [r["nll"] for r in sel],
                    yerr=[2 * r["nll_se"] for r in sel], fmt="o-", ms=3, capsize=2,
                    label=label)
    ax.set_xlabel("attention / feed-forward dropout rate")
    ax.set_title(f"test NLL, {size} labels (mean ± 2 s.e.)")
  axes[0][0].legend(fontsize=7)
  return fig


def check_config(config: ml_collections.ConfigDict) -> None:
  """The study's rules beyond `config_checks.check_fields`.

  Raises:
    config_checks.ConfigError: naming the field and the allowed values.
  """
  config_checks.check_dataset(config)
  config_checks.check_choice(config, "methods", METHODS)
  config_checks.check_seed_count(config)
  for name in ("pretrain_classes", "finetune_classes"):
    classes = tuple(config[name])
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(
        isinstance(c, int) and 0 <= c <= 9 for c in classes):
      raise config_checks.ConfigError(
          f"config.{name} must be at least 2 distinct digits in 0..9; got {classes}.")
  for name in ("dropout_rates", "lora_rates"):
    rates = tuple(config[name])
    if not rates or rates[0] != 0 or any(b <= a for a, b in itertools.pairwise(rates)):
      raise config_checks.ConfigError(
          f"config.{name} must be increasing rates starting at 0 (the baseline each "
          f"setting is paired with); got {rates}.")
    if rates[-1] >= 1:
      raise config_checks.ConfigError(f"config.{name} must be below 1; got {rates}.")
  classes = len(config.finetune_classes)
  for size in config.train_sizes:
    if size % classes:
      raise config_checks.ConfigError(
          f"config.train_sizes = {tuple(config.train_sizes)}: {size} is not a multiple of "
          f"the {classes} fine-tuning classes (the draws are balanced).")
  if config.features % config.num_heads:
    raise config_checks.ConfigError(
        f"config.features = {config.features} must be a multiple of config.num_heads = "
        f"{config.num_heads}.")


def _protocol(config) -> list[dict[str, str]]:
  here = "this study's design (no paper reproduced)"
  rows = [
      ("model", f"TransformerClassifier: rows as tokens, {config.num_blocks} pre-norm blocks "
       f"of width {config.features}, {config.num_heads} heads, mean-pooled", "-", here),
      ("pretraining", f"digits {tuple(config.pretrain_classes)}, {config.pretrain_epochs} "
       f"epochs of Adam (lr {config.pretrain_learning_rate:g}, batch "
       f"{config.pretrain_batch_size}), dropout {config.pretrain_rate:g} everywhere", "-",
       here),
      ("fine-tuning data", f"digits {tuple(config.finetune_classes)}, balanced draws of "
       f"{', '.join(map(str, config.train_sizes))} images per seed; all test images of "
       "those digits", "-", here),
      ("fine-tuning", f"{config.finetune_steps}+ Adam steps, batch {config.batch_size}; lr "
       f"{config.full_learning_rate:g} (full), {config.lora_learning_rate:g} (LoRA); a new "
       "head", "-", here),
      ("LoRA", f"rank {config.lora_rank}, alpha {config.lora_alpha:g} on qkv, out, ffn1, "
       "ffn2 of every block; lora_dropout on the update's input; A ~ U(+-1/sqrt(in)), B = 0; "
       "all else frozen but the head",
       "PEFT's LoRA Linear: dropout on the input of lora_A only; kaiming_uniform(a=sqrt(5)) "
       "A, zero B; modules_to_save for a new classifier", "Hu et al., ICLR 2022; PEFT"),
      ("grid", f"attention = feed-forward rate in {tuple(config.dropout_rates)}; "
       f"lora_dropout in {tuple(config.lora_rates)}; embedding and residual "
       f"{config.other_rate:g}", "-", here),
      ("seeds", f"{config.num_seeds}; a setting's difference to no dropout paired by seed "
       "(same draw, initialisation, batch order and uniform draws)", "-", here),
  ]
  return [{"setting": a, "ours": b, "reference": c, "source": d} for a, b, c, d in rows]


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  start = time.perf_counter()
  train, _, test = datasets.load_splits(config)
  image_shape = train.images.shape[1:]
  pretrained, info = pretrain(config, sections, classes_of(train, config.pretrain_classes),
                              classes_of(test, config.pretrain_classes), image_shape)
  logging.info("pretrained: test error %.4f (%.0fs)", info["error"], info["seconds"])
  pool = classes_of(train, config.finetune_classes)
  new_test = classes_of(test, config.finetune_classes)
  runs = []
  for method, size, seed in itertools.product(config.methods, config.train_sizes,
                                              range(config.num_seeds)):
    run = sections(f"runs/{method}/n{size}/seed{seed}", lambda m=method, n=size, s=seed:
                   finetune_run(config, pretrained, pool, new_test, image_shape, m, n, s))
    logging.info("%s, %d labels, seed %d: %.0fs", method, size, seed, run["seconds"])
    runs.append(run)
  timing = sections("timing", lambda: step_times(config, pretrained, pool, image_shape))
  rows = summarise(config, runs)
  verdicts = common_settings(config, rows)
  compared = 2 * sum("d_nll" in row for row in rows)  # error and NLL
  seconds = info["seconds"] + sum(r["seconds"] for r in runs)
  columns = (("method", "method", "s"), ("size", "labels", "d"),
             ("dropout_rate", "attention / FFN rate", "g"), ("lora_rate", "lora_dropout", "g"),
             ("error", "test error", "s"), ("d_error", "vs no dropout", "s"),
             ("nll", "NLL", "s"), ("d_nll", "vs no dropout", "s"), ("ece", "ECE", "s"))
  text = "\n".join([
      f"Dropout in fine-tuning on {config.dataset}: pretrained on digits "
      f"{tuple(config.pretrain_classes)} (test error {info['error']:.4f} on them), fine-tuned "
      f"on {tuple(config.finetune_classes)}; {config.num_seeds} seeds, mean ± s.e.; "
      "'vs no dropout' is the paired difference to the same method and run without "
      "dropout, * beyond 2 s.e. (test error and NLL: lower is better). Pretraining "
      f"{info['seconds']:.0f}s, fine-tuning {seconds - info['seconds']:.0f}s, this "
      f"invocation {time.perf_counter() - start:.0f}s.", "",
      reporting.markdown_table(reporting.mean_se_cells(rows, METRICS), columns),
      "The common settings against no dropout, per training size (helps / hurts: beyond "
      f"2 s.e.). With {config.num_seeds} seeds a null difference passes 2 s.e. with "
      f"probability {reporting.chance_of_two_se(config.num_seeds):.2f}, so of the "
      f"{compared} differences in the table above about "
      f"{compared * reporting.chance_of_two_se(config.num_seeds):.0f} would pass by chance "
      "alone: weigh patterns across sizes and rates over single cells.", "",
      reporting.markdown_table(verdicts, (
          ("setting", "setting", "s"), ("size", "labels", "d"),
          ("error", "test error", "s"), ("error_difference", "difference", "s"),
          ("nll", "NLL", "s"), ("nll_difference", "difference", "s"))),
      f"Training step time relative to no dropout (batch {timing[0]['batch_size']}, best of "
      f"{timing[0]['timing_repeats']} x {timing[0]['timing_steps']} steps taken in turn "
      f"over the settings, measured on: {timing[0]['device']}):", "",
      reporting.markdown_table(timing, (
          ("method", "method", "s"), ("dropout_rate", "attention / FFN rate", "g"),
          ("lora_rate", "lora_dropout", "g"), ("step_ms", "ms per step", ".2f"),
          ("relative_time", "relative", ".3f"))),
      "Protocol:", "", reporting.protocol_table(_protocol(config)),
  ])
  return study.Report(
      summary={"pretrain": info, "rows": rows, "common_settings": verdicts, "timing": timing,
               "runs": runs},
      markdown=text, rows=rows, figures={"finetuning.png": _plot(config, rows)},
      tables={"timing.csv": timing})


STUDY = study.Study("finetuning", train_and_evaluate)
