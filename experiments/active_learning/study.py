"""Active learning with MC-dropout acquisition (Gal, Islam & Ghahramani 2017).

Every run (acquisition function x seed) advances one round at a time in lock-step: all runs
hold the same number of labels, so one jitted program trains every run's model from scratch
(`jax.lax.map` over runs: a vmapped convolution with per-run weights is a grouped
convolution, slow on XLA:CPU), one scores every run's pool subset from MC-dropout samples,
and one evaluates them. Padded batches and a traced label count keep shapes static, so the
three programs compile once for the whole study.

Keys: round ``t`` of seed ``s`` uses ``fold_in(fold_in(key(config.seed), s), t)``, split
into named streams. Runs that share a seed share their initial labels and, in each round,
their initialisation, batch order and masks (common random numbers); only what they have
labelled differs. A checkpoint after every round holds the labelled sets and the history, so
a resumed study ends with the numbers of an uninterrupted one. ``config.devices`` shards the
runs over local devices (`study.model_mesh`): a run's choices do not depend on it, and its
numbers agree to float rounding.

Workdir: ``config.json``, ``checkpoints/state`` (orbax, per round), ``results.json`` (test
error per run and round, labels needed to reach each target error), ``curves.png``.
"""

from __future__ import annotations

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

from dropjax import acquisition, prng, uncertainty
from dropjax.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from dropjax.data import Split
from dropjax.layers import reseed
from dropjax.mc import mc_sample
from dropjax.models import KerasMnistCNN
from dropjax.penalties import is_kernel, l2_decay
from dropjax.train import init_train_state, train_step, weighted_mean
from experiments import config_checks, datasets, reporting, study

# Gal, Islam & Ghahramani 2017, Table 1 (MNIST): labels needed to reach 10% and 5% test
# error, as quoted in our issue tracker "as we recall it" (not yet checked against the paper).
PUBLISHED_LABELS_TO_REACH = {
    "bald": (145, 335), "variation_ratios": (120, 295), "max_entropy": (165, 355),
    "mean_std": (230, 695), "random": (255, 835),
}
# Deterministic acquisition: max entropy of the weight-scaling prediction, no MC samples.
DETERMINISTIC = "deterministic_entropy"
STREAMS = ("init", "data", "dropout", "mc", "subset", "score")
# The layers of `KerasMnistCNN` whose kernels ``config.weight_decay_layers`` may name.
DECAY_LAYERS = ("conv1", "conv2", "dense1", "dense2")


def keras_glorot_uniform(key: jax.Array, shape: tuple[int, ...],
                         dtype: Any = jnp.float32) -> jax.Array:
  """Keras 0.3's ``glorot_uniform``: U(+-sqrt(6 / (fan_in + fan_out))), the authors' init.

  Keras 0.3 took a convolution's fan-out as its number of filters alone, without the
  receptive field (the vendored ``ConvNets/keras/initializations.py`` L6-9 of the
  reference repository), so for an HWIO kernel fan_in = H * W * I and fan_out = O; for a
  dense kernel these are its two dimensions, as in `jax.nn.initializers.glorot_uniform`.
  """
  fan_in, fan_out = int(np.prod(shape[:-1])), shape[-1]
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  return jax.random.uniform(key, shape, dtype, -limit, limit)


def decayed_kernels(layers: tuple[str, ...]) -> Any:
  """The mask of the kernels of ``layers`` (attributes of the model) in its parameters:
  Keras's ``W_regularizer=l2(.)`` acts on the kernels it is attached to, never on biases."""
  return lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: is_kernel(path) and path[0].key in layers, params)


# config.init: the kernels' initialiser.
INITIALISERS = {"lecun_normal": nnx.initializers.lecun_normal(),
                "keras_glorot_uniform": keras_glorot_uniform}


def load_pool_and_test(config: ml_collections.ConfigDict) -> tuple[Split, Split]:
  """(pool, test): the whole training set is the pool, as in the paper."""
  data = datasets.load_classification(config.dataset, config.data_dir)
  pool = Split(np.concatenate([data.train.images, data.validation.images]),
               np.concatenate([data.train.labels, data.validation.labels]))
  return pool, data.test


def balanced_initial_labels(key: jax.Array, labels: np.ndarray, per_class: int) -> np.ndarray:
  """``per_class`` random examples of every class (the paper's balanced start)."""
  chosen = []
  for c in np.unique(labels):
    scores = jax.random.uniform(jax.random.fold_in(key, int(c)), labels.shape)
    scores = np.where(labels == c, np.asarray(scores), -np.inf)
    chosen.append(np.argsort(-scores, kind="stable")[:per_class])
  return np.sort(np.concatenate(chosen)).astype(np.int32)


def labels_to_reach(errors: np.ndarray, counts: np.ndarray, target: float) -> float | None:
  """The first label count whose test error is at most ``target`` (None if never)."""
  hits = np.nonzero(errors <= target)[0]
  return int(counts[hits[0]]) if len(hits) else None


class Programs:
  """The study's three jitted programs over runs, built once per config."""

  def __init__(self, config: ml_collections.ConfigDict, pool: Split, test: Split):
    self.config = config
    spatial = pool.images.shape[1]
    self.make = lambda rngs: KerasMnistCNN(
        10, spatial_size=spatial, conv_rate=config.conv_rate, dense_rate=config.dense_rate,
        kernel_size=config.kernel_size, kernel_init=INITIALISERS[config.init], rngs=rngs)
    self.graphdef = nnx.graphdef(self.make(nnx.Rngs(params=0, dropout=0)))
    self.tx = optax.adam(config.learning_rate)
    self.pool_images = jnp.asarray(pool.images)
    self.pool_labels = jnp.asarray(pool.labels)
    self.test_images = jnp.asarray(test.images)
    self.test_labels = jnp.asarray(test.labels)
    # Runs sharded over config.devices (`study.shard_models`), mapped on each device.
    mesh = study.model_mesh(config)
    self.train = jax.jit(study.shard_models(
        lambda runs, n: jax.lax.map(lambda r: self._train_run(*r, n), runs), mesh))
    self.evaluate = jax.jit(study.shard_models(
        lambda states: jax.lax.map(self._test_error, states), mesh))
    self.acquire = jax.jit(study.shard_models(
        lambda runs: jax.lax.map(lambda r: self._acquire_run(*r), runs), mesh))

  def _model(self, state):
    return nnx.merge(self.graphdef, *state, copy=True)

  def _train_run(self, keys, labelled, num_labelled):
    """Trains a fresh model on the first ``num_labelled`` entries of ``labelled``."""
    config, batch = self.config, self.config.batch_size
    _, params, rest = nnx.split(self.make(nnx.Rngs(params=keys[0], dropout=0)), nnx.Param, ...)
    steps_per_epoch = (num_labelled + batch - 1) // batch
    # Keras's weight decay in the reference code: c / N times the sum of squares of the
    # kernels named in config.weight_decay_layers (there: the hidden dense layer's only),
    # as its gradient; N (the labelled count) is traced, one program serves every round.
    decay = config.weight_decay_c / num_labelled.astype(jnp.float32)
    tx = optax.chain(l2_decay(decay, mask=decayed_kernels(tuple(config.weight_decay_layers))),
                     self.tx)
    state = init_train_state(params, tx, rest)
    slots = labelled.shape[0]
    padded = jnp.concatenate([labelled, jnp.zeros(batch, labelled.dtype)])

    def loss_fn(params, rest, idx, weight, step_key):
      model = nnx.merge(self.graphdef, params, rest, copy=True)
      model.train()
      reseed(model, step_key)
      logits = model(self.pool_images[idx])
      nll = optax.softmax_cross_entropy_with_integer_labels(logits, self.pool_labels[idx])
      return weighted_mean(nll, weight), rest

    # The labelled count is traced, so the steps are a fori_loop of the shared train_step
    # (dropjax.train.train_epochs needs a static epoch length).
    def step(t, state):
      epoch, b = t // steps_per_epoch, t % steps_per_epoch
      # Epoch order: the labelled slots sorted by fresh noise, empty slots last.
      noise = jax.random.uniform(jax.random.fold_in(keys[1], epoch), (slots,))
      order = jnp.argsort(jnp.where(jnp.arange(slots) < num_labelled, noise, 2.0))
      order = jnp.concatenate([order, jnp.zeros(batch, order.dtype)])
      position = b * batch + jnp.arange(batch)
      idx = padded[jax.lax.dynamic_slice_in_dim(order, b * batch, batch)]
      weight = (position < num_labelled).astype(jnp.float32)
      return train_step(state, idx, weight, jax.random.fold_in(keys[2], t), loss_fn=loss_fn,
                        tx=tx)[0]

    state = jax.lax.fori_loop(0, config.epochs * steps_per_epoch, step, state)
    return state.params, state.rest

  def _test_error(self, state):
    model = self._model(state)
    model.eval()

    def batch_errors(images_labels):
      images, labels = images_labels
      return jnp.sum(jnp.argmax(model(images), -1) != labels)

    size = self.config.eval_batch_size
    n = self.test_labels.shape[0] // size * size
    images = self.test_images[:n].reshape(-1, size, *self.test_images.shape[1:])
    errors = jax.lax.map(batch_errors, (images, self.test_labels[:n].reshape(-1, size)))
    return errors.sum() / n

  def _acquire_run(self, state, keys, function_index, available):
    """Scores a random pool subset with the run's function; returns the pool indices chosen."""
    config = self.config
    subset_scores = jax.random.uniform(keys[4], available.shape)
    subset = acquisition.select_top(subset_scores, available, config.pool_subset)
    model = self._model(state)
    model.eval()
    features = model.features(self.pool_images[subset])
    deterministic = jax.nn.softmax(model.head(features))[None]

    def forward(key, h):
      m = self._model(state)
      m.train()
      reseed(m, key)
      return jax.nn.softmax(m.head(h))

    # The convolutions come before the first dropout: computed once, not per sample.
    samples = mc_sample(forward, keys[3], features, config.mc_samples,
                        chunk_size=config.mc_chunk_size)
    scores = [acquisition.acquisition_score(name)(keys[5], samples)
              for name in acquisition.ACQUISITION_FUNCTIONS]
    scores.append(uncertainty.predictive_entropy(deterministic))
    chosen = acquisition.select_top(jnp.stack(scores)[function_index],
                                    jnp.ones(subset.shape, bool), config.acquisition_size)
    return subset[chosen]


def _function_names(config) -> list[str]:
  known = [*acquisition.ACQUISITION_FUNCTIONS, DETERMINISTIC]
  for name in config.acquisition_functions:
    if name not in known:
      raise ValueError(f"config.acquisition_functions: {name!r} is not one of {known}.")
  return list(config.acquisition_functions)


def check_config(config: ml_collections.ConfigDict) -> None:
  """The study's rules beyond `config_checks.check_fields`, checked before any work.

  Args:
    config: an ``active_learning`` config.

  Raises:
    ValueError: naming the field and the allowed values.
  """
  config_checks.check_dataset(config)
  study.model_mesh(config)  # config.devices within this process's devices
  _function_names(config)
  config_checks.check_choice(config, "init", tuple(INITIALISERS))
  config_checks.check_choice(config, "weight_decay_layers", DECAY_LAYERS)
  if len(set(config.weight_decay_layers)) != len(config.weight_decay_layers):
    raise config_checks.ConfigError(
        f"config.weight_decay_layers = {tuple(config.weight_decay_layers)}: a layer is named "
        "twice; name each of " f"{DECAY_LAYERS} at most once.")
  if config.test_size and config.test_size % config.eval_batch_size:
    raise config_checks.ConfigError(
        f"config.eval_batch_size = {config.eval_batch_size} must divide config.test_size = "
        f"{config.test_size} (the test pass runs in equal batches).")


def _pool_and_test(config: ml_collections.ConfigDict) -> tuple[Split, Split]:
  """The pool and the test set, checked against the config (`STUDY.load_data`: before the
  workdir records the config, so a corrected config is not refused as another)."""
  pool, test = load_pool_and_test(config)
  if config.test_size:
    test = Split(test.images[:config.test_size], test.labels[:config.test_size])
  if len(test.labels) % config.eval_batch_size:
    # The test pass runs in equal batches; a remainder would be left out of the error.
    raise config_checks.ConfigError(
        f"config.eval_batch_size={config.eval_batch_size} must divide the "
        f"{len(test.labels)} test images (set config.test_size or the batch).")
  if _max_labels(config) + config.pool_subset > len(pool.labels):
    raise config_checks.ConfigError(
        f"The pool ({len(pool.labels)} examples) is too small for {_max_labels(config)} labels "
        f"plus a subset of {config.pool_subset}.")
  return pool, test


def _max_labels(config: ml_collections.ConfigDict) -> int:
  return config.initial_per_class * 10 + config.acquisition_size * config.rounds


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  """Runs every acquisition function for every seed; the curves and label counts."""
  pool, test = sections.data
  results = sections("results", lambda: _acquire_and_train(config, pool, test, sections.folder))
  return study.Report(summary=results, markdown=report(config, results, len(test.labels)),
                      tables={"labels_to_reach.csv": results["rows"]},
                      figures={"curves.png": _plot(config, results)})


STUDY = study.Study("active_learning", train_and_evaluate, load_data=_pool_and_test)


def _acquire_and_train(config: ml_collections.ConfigDict, pool: Split, test: Split,
                       workdir: str) -> dict[str, Any]:
  names = _function_names(config)
  max_labels = _max_labels(config)
  known = [*acquisition.ACQUISITION_FUNCTIONS, DETERMINISTIC]
  runs = [(name, seed) for name in names for seed in range(config.num_seeds)]
  programs = Programs(config, pool, test)

  root = prng.key(config.seed, config.prng_impl)
  seed_keys = [jax.random.fold_in(root, s) for s in range(config.num_seeds)]
  initial = [balanced_initial_labels(jax.random.fold_in(k, 10**6), np.asarray(pool.labels),
                                     config.initial_per_class) for k in seed_keys]
  labelled = np.zeros((len(runs), max_labels), np.int32)
  for r, (_, seed) in enumerate(runs):
    labelled[r, :len(initial[seed])] = initial[seed]
  num_labelled = len(initial[0])
  history: dict[str, Any] = {"labels": [], "test_error": [], "round_seconds": []}
  state_path = os.path.join(workdir, "checkpoints", "state")
  first_round = 0
  if checkpoint_exists(state_path):
    trees, meta = load_checkpoint(state_path, {"labelled": labelled})
    labelled, history = np.array(trees["labelled"]), meta["history"]
    first_round, num_labelled = meta["round"], meta["num_labelled"]
    logging.info("active learning: resuming at round %d (%d labels)", first_round, num_labelled)

  function_index = jnp.asarray([known.index(name) for name, _ in runs])
  start = time.perf_counter()
  for t in range(first_round, config.rounds + 1):
    tic = time.perf_counter()
    keys = jnp.stack([
        jax.random.split(jax.random.fold_in(seed_keys[seed], t), len(STREAMS))
        for _, seed in runs])
    states = programs.train((keys, jnp.asarray(labelled)), jnp.int32(num_labelled))
    errors = np.asarray(programs.evaluate(states))
    history["labels"].append(num_labelled)
    history["test_error"].append(errors.tolist())
    if t < config.rounds:
      available = np.ones((len(runs), len(pool.labels)), bool)
      for r in range(len(runs)):
        available[r, labelled[r, :num_labelled]] = False
      chosen = np.asarray(programs.acquire((states, keys, function_index,
                                            jnp.asarray(available))))
      labelled[:, num_labelled:num_labelled + config.acquisition_size] = chosen
      num_labelled += config.acquisition_size
    history["round_seconds"].append(time.perf_counter() - tic)
    save_checkpoint(state_path, {"labelled": labelled},
                    {"history": history, "round": t + 1, "num_labelled": num_labelled})
    # The learning curve: test error against the labels trained on, per run.
    study.write_curves({f"test_error/{name}-seed{seed}": [error]
                        for (name, seed), error in zip(runs, errors, strict=True)},
                       steps=[history["labels"][-1]])
    done = t + 1 - first_round
    logging.info("round %d/%d: %d labels, test error %s, ETA %.0fs", t, config.rounds,
                 history["labels"][-1], np.round(errors, 4).tolist(),
                 (time.perf_counter() - start) / done * (config.rounds - t))

  results = summarise(config, runs, history)
  results["labelled"] = labelled.tolist()
  results["labels_per_class"] = labels_per_class(runs, labelled, np.asarray(pool.labels))
  results["seconds"] = float(np.sum(history["round_seconds"]))
  return results


def labels_per_class(runs, labelled: np.ndarray, pool_labels: np.ndarray,
                     num_classes: int = 10) -> dict[str, list[float]]:
  """Per function, the mean over seeds of how many labelled images each class holds at
  the end (the balanced start included): whether a function concentrates on some digits."""
  counts: dict[str, list[np.ndarray]] = {}
  for r, (name, _) in enumerate(runs):
    counts.setdefault(name, []).append(
        np.bincount(pool_labels[labelled[r]], minlength=num_classes))
  return {name: np.mean(c, axis=0).tolist() for name, c in counts.items()}


def summarise(config, runs, history) -> dict[str, Any]:
  """Per function: mean and std over seeds of the error curve and of the labels needed."""
  counts = np.asarray(history["labels"])
  errors = np.asarray(history["test_error"])  # (rounds + 1, runs)
  curves, rows = {}, []
  for name in dict.fromkeys(n for n, _ in runs):
    columns = [r for r, (n, _) in enumerate(runs) if n == name]
    curves[name] = {"mean": errors[:, columns].mean(1).tolist(),
                    "std": errors[:, columns].std(1).tolist()}
    row: dict[str, Any] = {"function": name, "seeds": len(columns),
                           "final_error": float(errors[-1, columns].mean())}
    for target in config.target_errors:
      reached = [labels_to_reach(errors[:, c], counts, target) for c in columns]
      hit = [v for v in reached if v is not None]
      row[f"labels_to_{target:g}"] = float(np.mean(hit)) if len(hit) == len(reached) else None
      row[f"labels_to_{target:g}_reached"] = f"{len(hit)}/{len(reached)}"
    rows.append(row)
  if config.num_seeds >= 2:
    _add_seed_statistics(rows, runs, errors)
  return {"labels": counts.tolist(), "curves": curves, "rows": rows,
          "summary": {r["function"]: r["final_error"] for r in rows}}


def _add_seed_statistics(rows, runs, errors) -> None:
  """Mean ± s.e. over seeds of each function's final error and of its mean error over the
  rounds (the area under its learning curve over the rounds: one number for the whole
  curve, less noisy than any one round), and both as paired differences from random
  (seed s of every function starts from the same labels and keys)."""
  per_seed = {}
  for name in (r["function"] for r in rows):
    columns = [c for c, (n, _) in enumerate(runs) if n == name]  # in seed order
    per_seed[name] = {"final_error": errors[-1, columns], "mean_error": errors[:, columns].mean(0)}
  for row in rows:
    values = per_seed[row["function"]]
    for measure, seeds in values.items():
      row[measure], row[f"{measure}_se"] = reporting.seed_statistics(seeds)
      if "random" in per_seed and row["function"] != "random":
        d, se = reporting.paired_difference(seeds, per_seed["random"][measure])
        row[f"d_{measure}"], row[f"d_{measure}_se"] = d, se
        row[f"d_{measure}_decided"] = bool(abs(d) > 2 * se)


def report(config, results, num_test: int) -> str:
  """The labels-to-target table with the paper's numbers beside ours."""
  def show(value, reached):
    return f"- ({reached})" if value is None else f"{value:.0f} ({reached})"

  columns = [("function", "acquisition", "s")]
  rows = []
  for row in results["rows"]:
    out = {"function": row["function"], "final_error": 100 * row["final_error"]}
    published = PUBLISHED_LABELS_TO_REACH.get(row["function"], (None, None))
    for i, target in enumerate(config.target_errors[:2]):
      out[f"ours_{i}"] = show(row[f"labels_to_{target:g}"], row[f"labels_to_{target:g}_reached"])
      out[f"paper_{i}"] = "-" if published[i] is None else str(published[i])
    rows.append(out)
  for i, target in enumerate(config.target_errors[:2]):
    columns += [(f"ours_{i}", f"labels to {100 * target:g}% (ours; seeds reaching it)", "s"),
                (f"paper_{i}", f"labels to {100 * target:g}% (paper, MNIST)", "s")]
  columns.append(("final_error", f"error at {results['labels'][-1]} labels %", ".2f"))
  header = (
      f"Active learning on {config.dataset}: {config.num_seeds} seeds, start with "
      f"{results['labels'][0]} balanced labels, +{config.acquisition_size} per round up to "
      f"{results['labels'][-1]}, T = {config.mc_samples} MC samples on a random pool subset "
      f"of {config.pool_subset}, {config.epochs} epochs per round. Took "
      f"{results['seconds']:.0f}s. Paper: Gal, Islam & Ghahramani (ICML 2017), Table 1, "
      "MNIST up to 1000 labels (numbers as recalled in our issue, to be checked).\n\n")
  text = [header + reporting.markdown_table(rows, columns)]
  if "labels_per_class" in results:
    per_class = results["labels_per_class"]
    classes = range(len(next(iter(per_class.values()))))
    text += [f"Labelled images per class at {results['labels'][-1]} labels (mean over seeds; "
             f"{config.initial_per_class} per class at the start):", "",
             reporting.markdown_table(
                 [{"function": name, **{str(c): counts[c] for c in classes},
                   "ratio": max(counts) / max(min(counts), 1e-9)}
                  for name, counts in per_class.items()],
                 [("function", "acquisition", "s"), *((str(c), str(c), ".1f") for c in classes),
                  ("ratio", "most / fewest", ".1f")])]
  if "mean_error_se" in results["rows"][0]:
    measures = ("mean_error", "final_error")
    scaled = {f"{p}{m}{s}" for m in measures for p in ("", "d_") for s in ("", "_se")}
    percent = [{k: 100 * v if k in scaled else v for k, v in r.items()}
               for r in results["rows"]]
    text += [f"Test error (%), mean ± s.e. over {config.num_seeds} seeds: the mean over the "
             f"{len(results['labels'])} rounds (the area under the learning curve) and at "
             f"{results['labels'][-1]} labels, and each function minus random paired by seed "
             "(* : beyond 2 s.e.; with no true difference that happens with probability "
             f"{reporting.chance_of_two_se(config.num_seeds):.2f} over {config.num_seeds} "
             "seeds, Student's t):", "",
             reporting.markdown_table(reporting.mean_se_cells(percent, measures, ".2f"), [
                 ("function", "acquisition", "s"), ("mean_error", "mean over rounds", "s"),
                 ("d_mean_error", "minus random", "s"), ("final_error",
                 f"at {results['labels'][-1]} labels", "s"),
                 ("d_final_error", "minus random", "s")])]
  text += ["Protocol (the reference: Riashat/Active-Learning-Bayesian-Convolutional-Neural-"
           f"Networks @ {REFERENCE_COMMIT[:8]}, folder {REFERENCE_DIR}; Keras 0.3.1 as vendored "
           "in ConvNets/keras):", "", reporting.protocol_table(protocol_rows(config, num_test))]
  return "\n".join(text)


REFERENCE_COMMIT = "f8b68038bd3b97c473e9c1de6b6cdee4538021f4"
REFERENCE_DIR = "ConvNets/FINAL_Averaged_Experiments/Final_Experiments_Run"


def protocol_rows(config: ml_collections.ConfigDict, num_test: int) -> list[dict[str, str]]:
  """Our settings (from ``config``) beside the authors' Keras scripts, with file and line
  (BALD = Dropout_BALD_Q10_N1000.py; the other MC-dropout scripts match it)."""
  k = config.kernel_size
  decay = (f"{config.weight_decay_c:g} / N on "
           f"{', '.join(config.weight_decay_layers) or 'no layer'} (N: current labels)")
  test = f"{num_test:,}" if config.test_size else f"all {num_test:,}"
  rows = [
      ("network", f"conv {k}x{k} (32) x 2, max-pool, dropout {config.conv_rate:g}, dense 128, "
       f"dropout {config.dense_rate:g}, dense 10, in every round",
       "the same with 4x4 kernels in rounds 1-98; round 0 (20 labels) trains a 4-conv net "
       "(32, 32, 64, 64)", "BALD L39, L169-191 (round 0), L310-326"),
      ("Random's network and decay", "the same as every function's",
       "3x3 kernels, c = 3.5", "Random_Q10_N1000.py L34, L177, L255"),
      ("initialisation", config.init, "Keras 0.3.1 glorot_uniform, fan-out of a conv = its "
       "filters; biases 0", "keras/layers/convolutional.py L226, layers/core.py L911, "
       "initializations.py L6-9, L39-42"),
      ("weight decay", decay, "l2(2.5 / N) on the Dense(128) kernel only",
       "BALD L184-187, L319-322"),
      ("optimiser", f"Adam lr {config.learning_rate:g}, batch {config.batch_size}, "
       f"{config.epochs} epochs, rebuilt each round", "Adam (Keras defaults), batch 128, "
       "50 epochs, a new Sequential each round", "BALD L23, L27, L194-195, L310, L328-329"),
      ("acquisitions", f"{config.rounds} x {config.acquisition_size} from "
       f"{config.initial_per_class * 10} balanced labels", "98 x 10 from 20 balanced labels",
       "BALD L43, L48, L78-134"),
      ("scored pool subset, MC samples", f"{config.pool_subset}, T = {config.mc_samples}",
       "2,000, T = 100", "BALD L46, L229-232"),
      ("pool", "the whole training set", "40,000 shuffled training images (20,000-60,000)",
       "BALD L65-75"),
      ("test set", f"{test} test images, weight scaling", "all 10,000, dropout off",
       "BALD L214, L348"),
      ("seeds", str(config.num_seeds), "3 repeats", "BALD L21"),
      ("Mean STD", "the mean over classes of the std over T samples",
       "as coded the std is 0 for every image (each of the T reads takes the same column), "
       "so its curve is random acquisition from the subset", "Dropout_Segnet_Q10_N1000.py L237"),
  ]
  return [{"setting": a, "ours": str(b), "reference": c, "source": d} for a, b, c, d in rows]


def _plot(config, results):
  plt = reporting.pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  counts = np.asarray(results["labels"])
  for name, curve in results["curves"].items():
    mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
    ax.plot(counts, 100 * mean, label=name)
    ax.fill_between(counts, 100 * (mean - std), 100 * (mean + std), alpha=0.2)
  for target in config.target_errors:
    ax.axhline(100 * target, color="gray", lw=0.5, ls="--")
  ax.set_xlabel("labelled images")
  ax.set_ylabel("test error (%)")
  ax.set_title(f"Active learning on {config.dataset} (band: std over {config.num_seeds} seeds)")
  ax.legend(fontsize=8)
  return fig
