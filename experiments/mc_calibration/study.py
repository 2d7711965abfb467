"""The calibration-under-shift study (Ovadia et al. 2019, MNIST), over seeds.

Per seed: a deep ensemble of vanilla nets (trained with dropout at the vanilla rate, off
at test, as in the reference), temperature scaling of its first member, and an MC-dropout
net with its own tuned batch size, learning rate and rate, all on the clean and rotated
test sets; plus OOD detection (train on digits 0-4, score 5-9). Every metric is reported
as mean ± s.e. over seeds, and each published ordering as paired differences per angle.

Workdir: ``config.json``, ``seeds/seed{i}.json`` (one per seed: resumable), ``shift.csv``,
``shift.png``, ``results.md``.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from scipy import ndimage

from dropjax import laplace, metrics, prng, uncertainty
from dropjax.calibration import fit_temperature
from dropjax.data import Split
from dropjax.mc import mc_running_means, mc_sample, module_forward
from dropjax.models import MLP, KerasMnistCNN, LeNet5
from dropjax.train import ensemble_member, fit_ensemble
from experiments import config_checks, datasets, reporting, study

MODELS = ("mlp", "lenet", "lenet5")
FAMILIES = ("vanilla", "dropout")
# config.init: "glorot_uniform" (Keras's default; the reference passes no initialiser) or
# "lecun_normal" (flax's).
INITIALISERS = {"glorot_uniform": jax.nn.initializers.glorot_uniform(),
                "lecun_normal": jax.nn.initializers.lecun_normal()}
METRICS = ("accuracy", "nll", "brier", "ece")
VANILLA, TEMPERATURE, DROPOUT_WS = "vanilla", "temperature scaling", "dropout net, no MC"
LAPLACE = "last-layer Laplace"


def mc_method(samples: int) -> str:
  return f"MC dropout (S={samples})"


def ensemble_method(size: int) -> str:
  return f"deep ensemble ({size})"


def rotate(images: np.ndarray, angle: float, order: int = 3) -> np.ndarray:
  """Rotates NHWC images by ``angle`` degrees the way Ovadia et al.'s data does.

  ``scipy.ndimage.rotate`` over the (width, height) axes with its defaults: the canvas
  grows to hold the rotated image, a spline of ``order`` (3, cubic, is scipy's default),
  zero fill, and no clipping; then the centre crop back to the input size
  (uq_benchmark_2019/mnist/data_lib.py L132-134, ``_crop_center`` L68-72).
  """
  if angle == 0:
    return images
  out = ndimage.rotate(images, angle, axes=(2, 1), order=order)
  height, width = images.shape[1:3]
  top, left = out.shape[1] // 2 - height // 2, out.shape[2] // 2 - width // 2
  return out[:, top:top + height, left:left + width]


def _classes(split: Split, keep: np.ndarray) -> Split:
  mask = np.isin(split.labels, keep)
  return Split(split.images[mask], split.labels[mask])


def _initialise_kernels(model: nnx.Module, init, key: jax.Array) -> nnx.Module:
  """Redraws every Linear and Conv kernel of ``model`` with ``init`` (biases stay 0)."""
  modules = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Linear | nnx.Conv)]
  for i, module in enumerate(modules):
    kernel = module.kernel[...]
    module.kernel[...] = init(jax.random.fold_in(key, i), kernel.shape, kernel.dtype)
  return model


def build_model(config: ml_collections.ConfigDict, num_classes: int, image_shape,
                rate: float, rngs: nnx.Rngs) -> nnx.Module:
  """``config.model`` with dropout ``rate`` at every position it has."""
  if config.model == "mlp":
    model = MLP(int(np.prod(image_shape)), list(config.hidden), num_classes,
                input_rate=rate if config.input_dropout else 0.0, hidden_rate=rate, rngs=rngs)
  elif config.model == "lenet":
    model = KerasMnistCNN(num_classes, spatial_size=image_shape[0], conv_rate=rate,
                          dense_rate=rate, channels=(32, 64), kernel_size=3, rngs=rngs)
  else:
    model = LeNet5(num_classes, spatial_size=image_shape[0], dropout_rate=rate, rngs=rngs)
  return _initialise_kernels(model, INITIALISERS[config.init], rngs.params())


def train_family(config, train: Split, num_classes: int, family: str, key: jax.Array,
                 count: int) -> list[nnx.Module]:
  """``count`` models of ``family`` (its batch size, learning rate and training rate from
  ``config.hparams``), trained in one program; member k from ``fold_in(key, k)``."""
  hp = config.hparams[family]
  keys = jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.arange(count))
  make = lambda rngs: build_model(config, num_classes, train.images.shape[1:],
                                  hp.dropout_rate, rngs)
  # Convolutional members one after another: vmapped per-member kernels are grouped
  # convolutions, several times slower on CPU (see fit_ensemble).
  graphdef, states, history = fit_ensemble(make, train, keys=keys, epochs=config.epochs,
                                           batch_size=min(hp.batch_size, len(train.labels)),
                                           learning_rate=hp.learning_rate,
                                           vectorize=config.model == "mlp")
  study.write_curves({f"loss/member{k}": history["loss"][:, k] for k in range(count)}, family)
  return [ensemble_member(graphdef, states, k) for k in range(count)]


@nnx.jit
def _apply(model, x):
  return model(x)


def _logits(model: nnx.Module, x: jax.Array) -> jax.Array:
  model.eval()
  return _apply(model, x)


def fit_laplace(config, model: nnx.Module, train: Split) -> laplace.LastLayerLaplace:
  """The last-layer Laplace approximation of a trained vanilla net, on its training set."""
  return laplace.fit_model_laplace(model, train.images, train.labels,
                                   hessian=config.laplace_hessian,
                                   structure=config.laplace_structure)


def laplace_probs(config, model, posterior, x, key) -> jax.Array:
  return laplace.predictive_probs(posterior, laplace.last_layer_features(model, x),
                                  link=config.laplace_link, key=key,
                                  num_samples=max(config.mc_samples))


def _probs_of_methods(config, members, posterior, dropout_net, temperature, x,
                      key, laplace_key) -> dict[str, Any]:
  """Every method's class probabilities on ``x``; ``key`` for the MC-dropout masks,
  ``laplace_key`` for Laplace's sampled last layers (``link="mc"``)."""
  member_probs = [jax.nn.softmax(_logits(m, x)) for m in members]
  first = _logits(members[0], x)
  probs = {VANILLA: member_probs[0], TEMPERATURE: jax.nn.softmax(first / temperature),
           LAPLACE: laplace_probs(config, members[0], posterior, x, laplace_key),
           ensemble_method(len(members)): jnp.mean(jnp.stack(member_probs), 0),
           DROPOUT_WS: jax.nn.softmax(_logits(dropout_net, x))}
  forward = module_forward(dropout_net)
  means = jax.jit(lambda f, k, x: mc_running_means(
      lambda kk, xx: jax.nn.softmax(f(kk, xx)), k, x, tuple(config.mc_samples),
      chunk_size=config.mc_chunk_size))(forward, key, x)
  for s, mean in zip(config.mc_samples, means, strict=True):
    probs[mc_method(s)] = mean
  return probs


def seed_run(config: ml_collections.ConfigDict, train: Split, validation: Split, test: Split,
             seed: int) -> dict[str, Any]:
  """One seed: the shift study's metrics per angle and method, and the OOD scores."""
  tic = time.perf_counter()
  root = jax.random.fold_in(prng.key(config.seed, config.prng_impl), seed)
  # Streams: 0 the shift study's models, 1 the OOD study's, 2 the MC masks, 3 Laplace's
  # sampled last layers.
  shift_models = {family: jax.random.fold_in(jax.random.fold_in(root, 0), i)
                  for i, family in enumerate(FAMILIES)}
  members = train_family(config, train, 10, "vanilla", shift_models["vanilla"],
                         config.ensemble_size)
  dropout_net = train_family(config, train, 10, "dropout", shift_models["dropout"], 1)[0]
  temperature = float(fit_temperature(_logits(members[0], jnp.asarray(validation.images)),
                                      validation.labels))
  posterior = fit_laplace(config, members[0], train)
  mc_key = jax.random.fold_in(root, 2)
  shift = []
  for angle in config.angles:
    x = jnp.asarray(rotate(test.images, angle, config.rotation_order))
    probs = _probs_of_methods(config, members, posterior, dropout_net, temperature, x,
                              jax.random.fold_in(mc_key, angle),
                              jax.random.fold_in(jax.random.fold_in(root, 3), angle))
    for method, p in probs.items():
      shift.append({"angle": angle, "method": method,
                    **metrics.summary(p, test.labels, config.ece_bins)})
  ood = ood_run(config, train, validation, test, jax.random.fold_in(root, 1))
  return {"seed": seed, "temperature": temperature,
          "laplace_prior_precision": float(posterior.prior_precision), "shift": shift,
          "ood": ood, "seconds": time.perf_counter() - tic}


def ood_run(config, train, validation, test, key) -> list[dict[str, Any]]:
  """Train on digits 0-4 (the same families), score test 0-4 (in) against 5-9 (out)."""
  known = np.arange(5)
  inside_train = _classes(train, known)
  members = train_family(config, inside_train, 5, "vanilla", jax.random.fold_in(key, 0),
                         config.ensemble_size)
  dropout_net = train_family(config, inside_train, 5, "dropout", jax.random.fold_in(key, 1),
                             1)[0]
  inside, outside = _classes(test, known), _classes(test, np.arange(5, 10))
  x = jnp.asarray(np.concatenate([inside.images, outside.images]))
  is_ood = np.concatenate([np.zeros(len(inside.labels)), np.ones(len(outside.labels))])
  forward = module_forward(dropout_net)
  samples = jax.jit(lambda f, k, x: mc_sample(lambda kk, xx: jax.nn.softmax(f(kk, xx)), k,
                                              x, max(config.mc_samples),
                                              chunk_size=config.mc_chunk_size))(
      forward, jax.random.fold_in(key, 2), x)
  vanilla = jax.nn.softmax(_logits(members[0], x))
  posterior = fit_laplace(config, members[0], inside_train)
  laplace_pred = laplace_probs(config, members[0], posterior, x, jax.random.fold_in(key, 3))
  ensemble = jnp.mean(jnp.stack([jax.nn.softmax(_logits(m, x)) for m in members]), 0)
  scores = {
      "MC dropout: predictive entropy": uncertainty.predictive_entropy(samples),
      "MC dropout: mutual information (BALD)": uncertainty.mutual_information(samples),
      "MC dropout: variation ratio": uncertainty.variation_ratio(samples),
      "vanilla: entropy": uncertainty.predictive_entropy(vanilla[None]),
      f"{LAPLACE}: predictive entropy": uncertainty.predictive_entropy(laplace_pred[None]),
      f"{ensemble_method(len(members))}: predictive entropy":
          uncertainty.predictive_entropy(ensemble[None]),
  }
  return [{"score": name, "auroc": float(metrics.auroc(scores=s, positives=is_ood)),
           "aupr": float(metrics.average_precision(scores=s, positives=is_ood)),
           "fpr_at_95_tpr": float(metrics.fpr_at_tpr(scores=s, positives=is_ood))}
          for name, s in scores.items()]


def _per_seed(runs, angle_filter, method: str, metric: str) -> np.ndarray:
  """``metric`` of ``method`` per seed, averaged over the angles ``angle_filter`` keeps."""
  return np.asarray([np.mean([r[metric] for r in run["shift"]
                              if r["method"] == method and angle_filter(r["angle"])])
                     for run in runs])


def summarise(config, runs) -> dict[str, Any]:
  """Mean ± s.e. over seeds per angle and method, on the clean set and over rotations."""
  methods = list(dict.fromkeys(r["method"] for r in runs[0]["shift"]))
  def table(angle_filter):
    rows = []
    for method in methods:
      row: dict[str, Any] = {"method": method}
      for metric in METRICS:
        row[metric], row[f"{metric}_se"] = reporting.seed_statistics(
            _per_seed(runs, angle_filter, method, metric))
      rows.append(row)
    return rows
  per_angle = [{"angle": angle, **row} for angle in config.angles
               for row in table(lambda a, angle=angle: a == angle)]
  ood = []
  for i, first in enumerate(runs[0]["ood"]):
    row = {"score": first["score"]}
    for metric in ("auroc", "aupr", "fpr_at_95_tpr"):
      row[metric], row[f"{metric}_se"] = reporting.seed_statistics(
          [run["ood"][i][metric] for run in runs])
    ood.append(row)
  return {"methods": methods, "clean": table(lambda a: a == 0),
          "shifted": table(lambda a: a != 0), "per_angle": per_angle, "ood": ood}


PAPER = ("Ovadia et al., NeurIPS 2019, arXiv 1906.02530v2")


def published_findings(config) -> list[tuple[str, str, str, list[str], str]]:
  """Ovadia et al.'s findings as ``(text, source, method, rivals, metric)``: ``method`` has
  a lower ``metric`` than every rival (lower is better for each metric used).

  Their MNIST claim (Sec. 4.1, on LeNet; App. A.1 says the MLP showed "similar trends") is
  about the Brier score: "nearly all other methods (except vanilla) perform better than
  ... Temperature scaling in terms of Brier score under shift". That ensembles do best and
  dropout beats temperature scaling are their takeaways over all datasets (Sec. 5), tested
  here on MNIST too.
  """
  ensemble, mc = ensemble_method(config.ensemble_size), mc_method(max(config.mc_samples))
  others = [VANILLA, TEMPERATURE, mc, DROPOUT_WS]
  mnist, overall = "MNIST, Sec. 4.1 and Fig. 1b", "all datasets, Sec. 5 (not MNIST-specific)"
  return [
      ("under shift MC dropout has a lower Brier score than temperature scaling", mnist, mc,
       [TEMPERATURE], "brier"),
      ("under shift the deep ensemble has a lower Brier score than temperature scaling",
       mnist, ensemble, [TEMPERATURE], "brier"),
      ("under shift the deep ensemble has the lowest Brier score", overall, ensemble, others,
       "brier"),
      ("under shift the deep ensemble has the lowest NLL", overall, ensemble, others, "nll"),
      ("under shift MC dropout has a lower ECE than temperature scaling", overall, mc,
       [TEMPERATURE], "ece"),
      ("under shift MC dropout has a lower NLL than temperature scaling", overall, mc,
       [TEMPERATURE], "nll"),
  ]


def verdict(runs, angle_filter, method, rivals, metric) -> tuple[str, list[dict[str, Any]]]:
  """Whether ``method`` beats every rival on ``metric``, paired over seeds: ``"holds"``
  (every difference below 0 by more than 2 s.e.), ``"reversed"`` (some rival lower by more
  than 2 s.e.) or ``"not decided"``; with each paired difference."""
  mine = _per_seed(runs, angle_filter, method, metric)
  diffs = []
  for rival in rivals:
    mean, se = reporting.paired_difference(mine, _per_seed(runs, angle_filter, rival, metric))
    diffs.append({"rival": rival, "difference": mean, "se": se,
                  "decided": reporting.exceeds_two_se(mean, se)})
  if all(d["decided"] and d["difference"] < 0 for d in diffs):
    return "holds", diffs
  if any(d["decided"] and d["difference"] > 0 for d in diffs):
    return "reversed", diffs
  return "not decided", diffs


def findings(config, runs) -> list[dict[str, Any]]:
  shifted = [a for a in config.angles if a != 0]
  out = []
  for text, source, method, rivals, metric in published_findings(config):
    on_mean, diffs = verdict(runs, lambda a: a != 0, method, rivals, metric)
    per_angle = [verdict(runs, lambda a, angle=angle: a == angle, method, rivals, metric)[0]
                 for angle in shifted]
    out.append({"finding": text, "source": source, "on_mean": on_mean, "differences": diffs,
                **{v: per_angle.count(v) for v in ("holds", "not decided", "reversed")},
                "angles": len(shifted)})
  return out


def laplace_comparisons(config, runs) -> list[dict[str, Any]]:
  """Last-layer Laplace against each other method, paired over seeds (not a finding of
  Ovadia et al., who had no Laplace): ``difference`` = Laplace minus the rival, so < 0
  favours Laplace on every metric used (NLL, Brier, ECE: lower is better)."""
  rivals = [VANILLA, TEMPERATURE, mc_method(max(config.mc_samples)),
            ensemble_method(config.ensemble_size)]
  out = []
  for test_set, angle_filter in (("clean", lambda a: a == 0),
                                 ("rotated (mean over angles)", lambda a: a != 0)):
    for rival in rivals:
      row: dict[str, Any] = {"test set": test_set, "rival": rival}
      for metric in ("nll", "brier", "ece"):
        mean, se = reporting.paired_difference(_per_seed(runs, angle_filter, LAPLACE, metric),
                                               _per_seed(runs, angle_filter, rival, metric))
        decided = reporting.exceeds_two_se(mean, se)
        row[metric] = (f"{mean:+.4f} ± {se:.4f}"
                       + (" (Laplace better)" if decided and mean < 0 else
                          " (Laplace worse)" if decided else " (not decided)"))
      out.append(row)
  return out


def _plot(summary):
  plt = reporting.pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for ax, metric in zip(axes, ("accuracy", "nll", "ece"), strict=True):
    for method in summary["methods"]:
      sel = [r for r in summary["per_angle"] if r["method"] == method]
      ax.errorbar([r["angle"] for r in sel], [r[metric] for r in sel],
                  yerr=[2 * r[f"{metric}_se"] for r in sel], fmt="o-", ms=3, capsize=2,
                  label=method)
    ax.set_xlabel("rotation (degrees)")
    ax.set_title(f"{metric} (mean ± 2 s.e. over seeds)")
  axes[0].legend(fontsize=7)
  return fig


REFERENCE = ("google-research/google-research, uq_benchmark_2019/ (models_lib.py at 01fdeb5, "
             "hparams_lib.py and experiment_utils.py at 0c1bbe5, data_lib.py and uq_utils.py "
             "at 066e6a1, README.md at 1a6ac1b)")


def protocol_rows(config: ml_collections.ConfigDict, train: Split,
                  validation: Split) -> list[dict[str, str]]:
  """Our settings (from ``config``) beside the reference's MNIST code, with file and line
  (paths under ``uq_benchmark_2019/``)."""
  vanilla, dropout = config.hparams.vanilla, config.hparams.dropout
  model = {
      "mlp": f"MLP {tuple(config.hidden)} ReLU, dropout before every dense layer"
             + (", the input included" if config.input_dropout else ", not on the input"),
      "lenet": "conv 3x3 (32), conv 3x3 (64), max-pool, dropout, dense 128, dropout, dense",
      "lenet5": "LeNet-5 (6/16 conv, 120/84 dense), dropout before each dense layer",
  }[config.model]
  reference_model = {
      "mlp": ("2 x 200 ReLU, dropout before every dense layer, the input included",
              "mnist/models_lib.py L58-71, mnist/hparams_lib.py L71"),
      "lenet": ("conv 3x3 (32), conv 3x3 (64), max-pool, dropout, dense 128, dropout, dense",
                "mnist/models_lib.py L74-92"),
      "lenet5": ("not a reference model: their 'lenet' is the conv 32-64 network",
                 "mnist/models_lib.py L74-92"),
  }[config.model]

  def hp(h):
    return f"batch {h.batch_size}, lr {h.learning_rate:.4g}, dropout {h.dropout_rate:.4g}"

  rows = [
      ("model", model, *reference_model),
      ("initialisation", config.init, "Keras defaults (glorot_uniform, zero biases): no "
       "initialiser is passed", "mnist/models_lib.py L82-91, uq_utils.py L81-82"),
      ("vanilla and ensemble members", f"{hp(vanilla)} (dropout in training only)",
       "MLP: batch 64, lr 4.638e-4, dropout 0.2305; LeNet: batch 1620, lr 1.020e-3, "
       "dropout 0.2854; dropout on in training, off at test",
       "mnist/hparams_lib.py L35, L43; uq_utils.py L100, L109"),
      ("MC dropout net", f"{hp(dropout)}, dropout kept at test",
       "MLP: batch 2, lr 1.141e-4, dropout 0.1209; LeNet: batch 1136, lr 5.026e-3, "
       "dropout 0.3034", "mnist/hparams_lib.py L38, L46; uq_utils.py L112-113"),
      ("training", f"Adam, {config.epochs} epochs, the last partial batch dropped",
       "Adam, 20 epochs, Keras keeps the last partial batch",
       "mnist/hparams_lib.py L29, mnist/models_lib.py L113, L124-130"),
      ("MC samples", f"S = {', '.join(map(str, config.mc_samples))} (running means of "
       "one stream)", "300, softmax averaged", "mnist/hparams_lib.py L28, L74; "
       "mnist/models_lib.py L152-155"),
      ("temperature scaling", "the first vanilla member, T fitted on the validation NLL",
       "'Vanilla model calibrated on in-distribution'; the MNIST fitting split is not in "
       "the stored code", "README.md L16"),
      ("last-layer Laplace (not in the paper)",
       f"the first vanilla net's output layer, {config.laplace_hessian.upper()} "
       f"{config.laplace_structure}, prior precision by marginal likelihood, "
       f"{config.laplace_link} predictive, fitted on the training split",
       "laplace-torch's defaults: last layer, K-FAC; its predictive's default link is "
       "the probit; optimize_prior_precision's default method is the marginal likelihood",
       "aleximmer/Laplace laplace/laplace.py L5 (at 07199b7); laplace/baselaplace.py "
       "ParametricLaplace.__call__ and optimize_prior_precision; Daxberger et al., "
       "NeurIPS 2021"),
      ("deep ensemble", f"{config.ensemble_size} vanilla members",
       "10 members ('the ensemble model used 10 instances'); 5 'may be sufficient'",
       f"{PAPER}, App. A.1 and Sec. 5; README.md L18"),
      ("data split", f"{len(train.labels)} train / {len(validation.labels)} validation",
       "50,000 / 10,000 (MNIST)", "mnist/data_lib.py L37, L85"),
      ("rotation", f"scipy.ndimage.rotate over (W, H), spline order {config.rotation_order}, "
       "grown canvas, centre crop, no clipping", "the same call with scipy's defaults "
       "(order 3)", "mnist/data_lib.py L132-134, L68-72"),
      ("angles", ", ".join(map(str, config.angles)), "15 to 180 by 15, and the clean test",
       "mnist/data_lib.py L42-43, L50"),
      ("seeds", f"{config.num_seeds}", "10 runs in the MNIST figure ('standard error over "
       "10 runs'); 5 released runs per method", f"{PAPER}, Fig. 1 caption; README.md L47"),
      ("the paper's MNIST model", model, "LeNet (their conv 32-64 network): 'we report "
       "results only for LeNet'; the MLP showed 'similar trends'", f"{PAPER}, App. A.1"),
      ("Brier score", "mean of sum_c (p_c - y_c)^2", "mean of sum_c p_c^2 - 2 p_y: ours "
       "minus 1", "experiment_utils.py L88"),
  ]
  return [{"setting": a, "ours": b, "reference": c, "source": d} for a, b, c, d in rows]


def check_config(config: ml_collections.ConfigDict) -> None:
  """The study's rules beyond `config_checks.check_fields`, checked before any work.

  Args:
    config: an ``mc_calibration`` config.

  Raises:
    config_checks.ConfigError: naming the field and the allowed values.
  """
  config_checks.check_dataset(config)
  config_checks.check_choice(config, "model", MODELS)
  config_checks.check_choice(config, "init", tuple(INITIALISERS))
  config_checks.check_choice(config, "laplace_hessian", laplace.HESSIANS)
  config_checks.check_choice(config, "laplace_structure", laplace.STRUCTURES)
  config_checks.check_choice(config, "laplace_link", laplace.LINKS)
  if sorted(config.hparams.keys()) != sorted(FAMILIES):
    raise config_checks.ConfigError(
        f"config.hparams must hold exactly {FAMILIES}; got {sorted(config.hparams.keys())}.")
  for family in FAMILIES:
    hp = config.hparams[family]
    if not isinstance(hp.batch_size, int) or hp.batch_size < 1:
      raise config_checks.ConfigError(
          f"config.hparams.{family}.batch_size must be a positive integer; got "
          f"{hp.batch_size!r}.")
    if not hp.learning_rate > 0:
      raise config_checks.ConfigError(
          f"config.hparams.{family}.learning_rate must be positive; got {hp.learning_rate!r}.")
    if not 0 <= hp.dropout_rate < 1:
      raise config_checks.ConfigError(
          f"config.hparams.{family}.dropout_rate must be in [0, 1); got {hp.dropout_rate!r}.")
  if not 0 < config.hparams.dropout.dropout_rate:
    raise config_checks.ConfigError(
        "config.hparams.dropout.dropout_rate must be above 0: MC dropout needs a rate.")
  config_checks.check_seed_count(config)
  config_checks.check_increasing(config, "mc_samples")
  if 0 not in tuple(config.angles) or len(config.angles) < 2:
    raise config_checks.ConfigError(
        f"config.angles = {tuple(config.angles)} must hold 0 (the clean test set) and at "
        "least one rotation.")
  if config.rotation_order not in range(6):
    raise config_checks.ConfigError(
        f"config.rotation_order must be a spline order in 0..5; got {config.rotation_order!r}.")


def train_and_evaluate(config: ml_collections.ConfigDict, sections: study.Sections
                       ) -> study.Report:
  start = time.perf_counter()
  train, validation, test = datasets.load_splits(config)
  runs = []
  for seed in range(config.num_seeds):
    run = sections(f"seeds/seed{seed}",
                   lambda seed=seed: seed_run(config, train, validation, test, seed))
    logging.info("seed %d: %.0fs (T = %.3f)", seed, run["seconds"], run["temperature"])
    runs.append(run)
  summary = summarise(config, runs)
  found = findings(config, runs)
  versus_laplace = laplace_comparisons(config, runs)
  precisions = [run["laplace_prior_precision"] for run in runs]
  seconds = sum(run["seconds"] for run in runs)
  columns = (("method", "method", "s"), ("accuracy", "accuracy", "s"), ("nll", "NLL", "s"),
             ("brier", "Brier (ours; theirs = ours - 1)", "s"), ("ece", "ECE", "s"))
  shifted = [a for a in config.angles if a != 0]
  text = "\n".join([
      f"Calibration under shift on {config.dataset} ({config.model}, {config.epochs} epochs, "
      f"{config.num_seeds} seeds; {config.ece_bins}-bin ECE; mean ± s.e. over seeds; training "
      f"and evaluation {seconds:.0f}s, this invocation {time.perf_counter() - start:.0f}s).",
      "", "Clean test set:", "",
      reporting.markdown_table(reporting.mean_se_cells(summary["clean"], METRICS), columns),
      f"Mean over the rotated angles {tuple(shifted)} (per angle: shift.csv, shift.png):", "",
      reporting.markdown_table(reporting.mean_se_cells(summary["shifted"], METRICS), columns),
      f"Published findings ({PAPER}; where each is stated) against ours, paired over "
      "seeds: holds = lower than every rival by more than 2 s.e.; reversed = a rival lower "
      f"by more than 2 s.e. With {config.num_seeds} seeds a difference with no true effect "
      f"passes 2 s.e. with probability {reporting.chance_of_two_se(config.num_seeds):.2f} "
      "(Student's t), and each finding is judged at every angle: read a few angles against "
      "the rest as noise.", "",
      "| finding | stated for | on the mean over rotated angles | rotated angles: holds / "
      "not decided / reversed |", "|---|---|---|---|",
      *[f"| {f['finding']} | {f['source']} | {f['on_mean']} ("
        + "; ".join(f"vs {d['rival']}: {d['difference']:+.4f} ± {d['se']:.4f}"
                    for d in f["differences"])
        + f") | {f['holds']} / {f['not decided']} / {f['reversed']} of {f['angles']} |"
        for f in found], "",
      f"{LAPLACE} ({config.laplace_hessian.upper()}, {config.laplace_structure}, "
      f"{config.laplace_link} predictive, on the first vanilla net; prior precision by "
      f"marginal likelihood: {min(precisions):.3g} to {max(precisions):.3g} over seeds) "
      "against the other methods, paired over seeds: Laplace minus the rival, mean ± s.e. "
      "(lower is better; decided = beyond 2 s.e.). Not in the paper: our comparison.", "",
      reporting.markdown_table(versus_laplace, (
          ("test set", "test set", "s"), ("rival", "rival", "s"), ("nll", "NLL", "s"),
          ("brier", "Brier", "s"), ("ece", "ECE", "s"))),
      "OOD detection, train on digits 0-4, test 0-4 (in) vs 5-9 (out):", "",
      reporting.markdown_table(reporting.mean_se_cells(summary["ood"],
                                                  ("auroc", "aupr", "fpr_at_95_tpr")),
                               (("score", "score", "s"), ("auroc", "AUROC", "s"),
                                ("aupr", "AUPR", "s"), ("fpr_at_95_tpr", "FPR at 95% TPR", "s"))),
      f"Protocol (the reference: {REFERENCE}):", "",
      reporting.protocol_table(protocol_rows(config, train, validation)),
  ])
  return study.Report(
      summary={"summary": summary, "findings": found, "laplace_comparisons": versus_laplace,
               "runs": runs}, markdown=text,
      rows=[{"test set": "clean", **r} for r in summary["clean"]]
      + [{"test set": "rotated (mean over angles)", **r} for r in summary["shifted"]],
      figures={"shift.png": _plot(summary)}, tables={"shift.csv": summary["per_angle"]})


STUDY = study.Study("mc_calibration", train_and_evaluate)
