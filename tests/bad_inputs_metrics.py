"""Bad inputs to the metrics, uncertainty scores, acquisition, temperature scaling and the
streaming metrics (rows of `test_bad_inputs.py`)."""

import jax
import jax.numpy as jnp
import numpy as np
from bad_input_case import Case

from dropjax import acquisition, calibration, metrics, streaming, uncertainty

PROBS = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
LABELS = np.array([0, 1, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8])
POSITIVES = np.array([False, False, True, True])
SAMPLES = np.stack([PROBS, PROBS[::-1]])  # (S=2, N=4, C=2)
LOGITS = np.log(PROBS) + 1.0


def _nan_row():
  probs = PROBS.copy()
  probs[2] = np.nan
  return probs


def _stream(*batches):
  metric = streaming.ClassificationMetrics()
  for probs, labels in batches:
    metric.update(probs=probs, labels=labels)
  return metric.compute()


CASES = [
    # Labels: shape, range, dtype (issue #18: (N, 1) labels gave accuracy 0.31 for 0.75).
    Case("metrics-labels-column-shape", lambda: metrics.accuracy(PROBS, LABELS[:, None]),
         ValueError, ["labels", "shape", "(4,)", "(4, 1)", "(4, 2)"]),
    Case("metrics-labels-one-hot", lambda: metrics.brier_score(PROBS, np.eye(2, dtype=int)[LABELS]),
         ValueError, ["labels", "(4,)", "(4, 2)", "argmax"]),
    Case("metrics-labels-negative",
         lambda: metrics.negative_log_likelihood(PROBS, np.array([0, 1, -1, 1])),
         ValueError, ["labels", "[0, 2)", "-1"]),
    Case("metrics-labels-too-large", lambda: metrics.accuracy(PROBS, np.array([0, 1, 2, 1])),
         ValueError, ["labels", "[0, 2)", "2 classes", "got 2"]),
    Case("metrics-labels-float", lambda: metrics.accuracy(PROBS, LABELS.astype(np.float32)),
         TypeError, ["labels", "integer", "float32"]),
    # Probabilities: logits, NaN, rank, emptiness.
    Case("metrics-probs-are-logits",
         lambda: metrics.negative_log_likelihood(LOGITS, LABELS),
         ValueError, ["probs", "probabilities", "sum", "logits", "jax.nn.softmax"]),
    Case("metrics-probs-negative-entries",
         lambda: metrics.expected_calibration_error(np.array([[1.5, -0.5]]), np.array([0])),
         ValueError, ["probs", ">= 0", "-0.5", "logits"]),
    Case("metrics-probs-nan-row", lambda: metrics.accuracy(_nan_row(), LABELS),
         ValueError, ["probs", "finite", "nan", "(2, 0)"]),
    Case("metrics-probs-rank-binned",
         lambda: metrics.expected_calibration_error(SAMPLES, np.zeros((2, 4), int)),
         ValueError, ["probs", "(N, C)", "(2, 4, 2)"]),
    Case("metrics-probs-empty", lambda: metrics.summary(np.zeros((0, 3)), np.zeros(0, int)),
         ValueError, ["probs", "(N, C)", "(0, 3)", "empty"]),
    Case("metrics-probs-strings", lambda: metrics.accuracy([["a", "b"]], [0]),
         TypeError, ["probs", "real numbers", "dtype"]),
    # Bins (num_bins=0 gave NaN).
    Case("metrics-num-bins-zero", lambda: metrics.expected_calibration_error(PROBS, LABELS, 0),
         ValueError, ["num_bins", "integer >= 1", "0"]),
    Case("metrics-num-bins-float",
         lambda: metrics.maximum_calibration_error(PROBS, LABELS, 2.5), TypeError,
         ["num_bins", "integer", "2.5"]),
    Case("metrics-num-bins-bool", lambda: metrics.reliability_diagram_data(PROBS, LABELS, True),
         TypeError, ["num_bins", "integer", "true"]),
    Case("metrics-equal-mass-not-bool",
         lambda: metrics.rms_calibration_error(PROBS, LABELS, equal_mass="yes"), TypeError,
         ["equal_mass", "true or false", "yes"]),
    # Detection metrics (a NaN score gave AUROC 1.0; positional calls swap silently vs sklearn).
    Case("metrics-auroc-positional", lambda: metrics.auroc(SCORES, POSITIVES), TypeError,
         ["keyword", "scores=", "positives=", "y_true"]),
    Case("metrics-auroc-swapped",
         lambda: metrics.auroc(scores=POSITIVES, positives=SCORES), ValueError,
         ["positives", "0/1", "0.1", "swap"]),
    Case("metrics-auroc-nan-score",
         lambda: metrics.auroc(scores=np.array([0.1, np.nan, 0.3, 0.8]), positives=POSITIVES),
         ValueError, ["scores", "finite", "nan"]),
    Case("metrics-average-precision-one-class",
         lambda: metrics.average_precision(scores=SCORES, positives=np.ones(4, bool)),
         ValueError, ["positives", "both", "4 positives and 0 negatives"]),
    Case("metrics-fpr-at-tpr-percent",
         lambda: metrics.fpr_at_tpr(scores=SCORES, positives=POSITIVES, tpr=95), ValueError,
         ["tpr", "(0, 1]", "95"]),
    Case("metrics-auroc-shape-mismatch",
         lambda: metrics.auroc(scores=SCORES, positives=POSITIVES[:3]), ValueError,
         ["positives", "same shape", "(3,)", "(4,)"]),
    # Rejection curve and regression coverage.
    Case("metrics-rejection-uncertainty-shape",
         lambda: metrics.accuracy_rejection_curve(PROBS, LABELS, np.ones(3)), ValueError,
         ["uncertainty", "(4,)", "(3,)"]),
    Case("metrics-coverage-negative-std",
         lambda: metrics.interval_coverage(np.zeros(3), np.array([1.0, -1.0, 1.0]), np.zeros(3)),
         ValueError, ["std", ">= 0", "-1.0"]),
    Case("metrics-coverage-percent-levels",
         lambda: metrics.interval_coverage(np.zeros(3), np.ones(3), np.zeros(3), [0.5, 95]),
         ValueError, ["levels", "(0, 1)", "95"]),
    # Uncertainty scores of MC samples.
    Case("metrics-uncertainty-rank", lambda: uncertainty.predictive_entropy(PROBS), ValueError,
         ["sample_probs", "(S, N, C)", "(4, 2)", "probs[None]"]),
    Case("metrics-uncertainty-logits",
         lambda: uncertainty.mutual_information(np.log(SAMPLES)), ValueError,
         ["sample_probs", "probabilities", "logits", "softmax"]),
    Case("metrics-regression-tau",
         lambda: uncertainty.gaussian_mixture_log_likelihood(np.zeros((5, 3)), np.zeros(3), 0.0),
         ValueError, ["tau", "(0, inf)", "precision", "0.0"]),
    Case("metrics-regression-targets-shape",
         lambda: uncertainty.mc_rmse(np.zeros((5, 3)), np.zeros(4)), ValueError,
         ["targets", "(3,)", "(4,)"]),
    # Acquisition.
    Case("metrics-acquisition-not-simplex",
         lambda: acquisition.bald(jax.random.key(0), SAMPLES * 2), ValueError,
         ["sample_probs", "probabilities", "sum"]),
    Case("metrics-select-top-more-than-available",
         lambda: acquisition.select_top(SCORES, POSITIVES, 3), ValueError,
         ["count", "available", "2 of 4", "3"]),
    Case("metrics-select-top-more-than-pool",
         lambda: acquisition.select_top(SCORES, np.ones(4, bool), 5), ValueError,
         ["count", "number of examples", "4", "5"]),
    Case("metrics-select-top-float-count",
         lambda: acquisition.select_top(SCORES, np.ones(4, bool), 2.0), TypeError,
         ["count", "integer", "2.0"]),
    # Temperature scaling.
    Case("metrics-temperature-label-range",
         lambda: calibration.fit_temperature(LOGITS, np.array([0, 1, 2, 1])), ValueError,
         ["labels", "[0, 2)", "logits has 2 classes"]),
    Case("metrics-temperature-probabilities",
         lambda: calibration.fit_temperature(PROBS, LABELS), ValueError,
         ["logits", "probabilities", "before softmax", "jnp.log(probs)"]),
    Case("metrics-temperature-labels-shape",
         lambda: calibration.temperature_nll(LOGITS, LABELS[:3], 1.0), ValueError,
         ["labels", "logits.shape[:-1]", "(4,)", "(3,)"]),
    Case("metrics-temperature-nonpositive",
         lambda: calibration.temperature_nll(LOGITS, LABELS, -1.0), ValueError,
         ["temperature", "(0, inf)", "-1.0"]),
    # Streaming metrics: the same checks on every update, and no silent empty result.
    Case("metrics-streaming-update-logits", lambda: _stream((LOGITS, LABELS)), ValueError,
         ["probs", "logits", "jax.nn.softmax"]),
    Case("metrics-streaming-update-labels-shape",
         lambda: streaming.ClassificationStats.empty().update(PROBS, LABELS[:, None]),
         ValueError, ["labels", "(4,)", "(4, 1)"]),
    Case("metrics-streaming-empty-compute", lambda: streaming.Accuracy().compute(), ValueError,
         ["no examples", "update"]),
    Case("metrics-streaming-merge-bins",
         lambda: streaming.ClassificationStats.empty(10).merge(
             streaming.ClassificationStats.empty(15)),
         ValueError, ["num_bins", "10", "15"]),
    Case("metrics-streaming-auroc-one-class",
         lambda: streaming.ScoreSample.empty().update(
             scores=SCORES, positives=np.zeros(4, bool)).compute(),
         ValueError, ["positives", "both", "0 positives and 4 negatives"]),
    Case("metrics-streaming-num-bins",
         lambda: streaming.ExpectedCalibrationError(num_bins=0), ValueError,
         ["num_bins", "integer >= 1", "0"]),
    # Shapes are static: checked under jit too.
    Case("metrics-labels-shape-under-jit",
         lambda: jax.jit(metrics.accuracy)(jnp.asarray(PROBS), jnp.asarray(LABELS[:, None])),
         ValueError, ["labels", "(4,)", "(4, 1)"]),
]
