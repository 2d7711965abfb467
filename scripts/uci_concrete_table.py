"""Writes results/uci-concrete-table.md (+ .csv; ``--name``) from a `uci_concrete` workdir.

    python scripts/uci_concrete_table.py --workdir runs/uci_concrete \
        [--length_workdirs runs/uci_concrete_epochs5 runs/uci_concrete_epochs25 ...]

``--length_workdirs`` are runs of the same study with other ``epochs_multiplier`` values:
their datasets get a table of learned p and paired differences against training length.

Learned rates and test metrics of concrete dropout beside the grid-searched MC dropout of
the same splits (our `uci.py` run, kept in each dataset's results).
"""

import argparse
import os

from dropjax import io
from dropjax.data import uci
from experiments import reporting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/uci_concrete")
  parser.add_argument("--out", default=os.path.join(ROOT, "results"))
  parser.add_argument("--length_workdirs", nargs="*", default=[],
                      help="runs of the study at other epochs_multiplier values")
  parser.add_argument("--name", default="uci-concrete-table",
                      help="the table's file name, no suffix")
  parser.add_argument("--command", default="python scripts/reproduce.py uci_concrete",
                      help="the command that reproduces the runs, printed under the table")
  args = parser.parse_args()

  def fmt(pair, digits=2):
    return "-" if pair is None else f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"

  rows, lines, paired = [], [], []
  for name in uci.UCI_DATASETS:
    result = reporting.load_json(os.path.join(args.workdir, name, "results.json"))
    if result is None:
      continue
    grid = result.get("grid", {})
    seconds = sum(result["seconds"].values())
    # Results written before separate heads existed name no layout: shared.
    names = result.get("rate_names", ["input", "hidden"])
    hidden = [n for n in names if n != "input"]
    rows.append({"dataset": name, **{f"rate_{n}": result[f"rate_{n}"][0] for n in names},
                 "grid_rate": grid.get("rate", [None])[0],
                 "rmse": result["mc_rmse"][0], "grid_rmse": grid.get("mc_rmse", [None])[0],
                 "ll": result["log_likelihood"][0],
                 "grid_ll": grid.get("log_likelihood", [None])[0],
                 "coverage_95": result["coverage_0.95"][0], "seconds": seconds})
    lines.append(
        f"| {name} | {result['n_splits']} | {fmt(result['rate_input'], 3)} | "
        f"{' / '.join(fmt(result[f'rate_{n}'], 3) for n in hidden)} | "
        f"{fmt(grid.get('rate'), 3)} | "
        f"{fmt(result['mc_rmse'])} | {fmt(grid.get('mc_rmse'))} | "
        f"{fmt(result['log_likelihood'])} | {fmt(grid.get('log_likelihood'))} | "
        f"{100 * result['coverage_0.95'][0]:.1f} | {seconds / 60:.1f} min |")
    splits = [r for r in result["rows"] if "grid_mc_rmse" in r]
    if splits:
      cells = []
      for ours, theirs in (("mc_rmse", "grid_mc_rmse"), ("log_likelihood", "grid_log_likelihood")):
        mean, se = reporting.paired_difference([r[ours] for r in splits],
                                               [r[theirs] for r in splits])
        rows[-1] |= {f"d_{ours}": mean, f"d_{ours}_se": se}
        mark = "*" if reporting.exceeds_two_se(mean, se) else ""
        cells.append(reporting.format_mean_se(mean, se, "+.3f") + mark)
      paired.append(f"| {name} | {len(splits)} | {cells[0]} | {cells[1]} |")
  header = [
      "Concrete dropout (learned p, heteroscedastic head) against grid-searched MC dropout "
      "(our run of the 2018 protocol) on the same splits, epochs and 10,000 MC samples. "
      f"Mean ± standard error over splits. `{args.command}`.",
      "",
      "The hidden p is one rate shared by the mean and log-variance heads, or, with separate "
      "heads (the reference notebook's layout), the mean head's / the log-variance head's.",
      "",
      "| dataset | splits | learned p (input) | learned p (hidden) | grid p | RMSE (concrete) | "
      "RMSE (grid) | LL (concrete) | LL (grid) | 95% PI coverage % | time |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  if paired:
    n = min(int(line.split("|")[2]) for line in paired)
    lines += [
        "", "Concrete minus grid, paired by split (mean ± s.e. over splits; `*`: more than 2 "
        "s.e. from 0; RMSE lower is better, LL higher is better). With "
        f"{n} splits a difference with no true effect passes 2 s.e. with probability "
        f"{reporting.chance_of_two_se(n):.2f} (Student's t).", "",
        "| dataset | splits | Δ RMSE | Δ LL |", "|---|---|---|---|", *paired]
  length_lines, length_rows = training_length_table([args.workdir, *args.length_workdirs])
  lines += ["", *length_lines] if length_lines else []
  _plot_rates(args.workdir, os.path.join(args.out, "uci_concrete_rates.png"))
  configs = {r["dataset"]: reporting.load_json(
      os.path.join(args.workdir, r["dataset"], "config.json")) for r in rows}
  configs = {name: c for name, c in configs.items() if c is not None}
  footer = ["", "Protocol (the reference: yaringal/ConcreteDropout at 0cb396d, "
            "concrete-dropout-keras.ipynb, raw lines of the .ipynb file; it holds the synthetic "
            "experiment only, no UCI code):", "",
            reporting.protocol_table(protocol_rows(configs))] if configs else []
  io.write_text_atomic(os.path.join(args.out, f"{args.name}.md"),
                       "\n".join(header + lines + footer) + "\n")
  io.write_csv_atomic(os.path.join(args.out, f"{args.name.replace('-', '_')}.csv"), rows)
  if length_rows:
    io.write_csv_atomic(os.path.join(args.out, "uci_concrete_length.csv"), length_rows)
  print("\n".join(header + lines))


def _paired(splits, ours, theirs):
  mean, se = reporting.paired_difference([r[ours] for r in splits], [r[theirs] for r in splits])
  mark = "*" if reporting.exceeds_two_se(mean, se) else ""
  return mean, se, reporting.format_mean_se(mean, se, "+.3f") + mark


def training_length_table(workdirs: list[str]) -> tuple[list[str], list[dict]]:
  """Learned p, paired differences against the grid and coverage per training length, for
  every dataset run in more than one of ``workdirs`` (runs differing in epochs_multiplier).
  The grid runs keep their own protocol length whatever the concrete run's."""
  runs = {}
  for workdir in workdirs:
    for name in uci.UCI_DATASETS:
      result = reporting.load_json(os.path.join(workdir, name, "results.json"))
      if result is not None and any("grid_mc_rmse" in r for r in result["rows"]):
        runs.setdefault(name, []).append((workdir, result))
  runs = {name: found for name, found in runs.items() if len(found) > 1}
  if not runs:
    return [], []
  lines = [
      "**Training length.** The same study with fewer epochs (`--config.epochs_multiplier`), "
      "against the same grid runs: learned p (mean over splits), concrete minus grid paired "
      "by split (`*`: more than 2 s.e. from 0) and 95% interval coverage. "
      f"Runs: {', '.join(f'`{w}`' for w in workdirs)}.", "",
      "| dataset | epochs | p (input) | p (mean head) | p (log-var head) | Δ RMSE | Δ LL | "
      "95% PI coverage % |", "|---|---|---|---|---|---|---|---|"]
  rows = []
  for name, found in runs.items():
    for workdir, result in sorted(found, key=lambda item: item[1]["epochs"]):
      names = result.get("rate_names", ["input", "hidden"])
      rates = [result[f"rate_{n}"][0] for n in names] + [float("nan")] * (3 - len(names))
      splits = [r for r in result["rows"] if "grid_mc_rmse" in r]
      d_rmse = _paired(splits, "mc_rmse", "grid_mc_rmse")
      d_ll = _paired(splits, "log_likelihood", "grid_log_likelihood")
      coverage = 100 * result["coverage_0.95"][0]
      rows.append({"dataset": name, "epochs": result["epochs"], "workdir": workdir,
                   **{f"rate_{n}": r for n, r in zip(("input", "mean_head", "log_var_head"),
                                                     rates, strict=True)},
                   "d_rmse": d_rmse[0], "d_rmse_se": d_rmse[1], "d_ll": d_ll[0],
                   "d_ll_se": d_ll[1], "coverage_95": coverage, "splits": len(splits)})
      lines.append(f"| {name} | {result['epochs']} | "
                   + " | ".join(f"{r:.3f}" for r in rates)
                   + f" | {d_rmse[2]} | {d_ll[2]} | {coverage:.1f} |")
  return lines, rows


def _ours(configs: dict[str, dict], describe) -> str:
  """``describe(config)`` if every dataset's config gives the same text, else per dataset."""
  texts = {name: describe(c) for name, c in configs.items()}
  if len(set(texts.values())) == 1:
    return next(iter(texts.values()))
  return "; ".join(f"{name}: {text}" for name, text in texts.items())


def protocol_rows(configs: dict[str, dict]) -> list[dict[str, str]]:
  """Our settings (from each dataset's recorded config) beside the reference notebook's."""
  layout = _ours(configs, lambda c: "input, and one per output head (mean, log-variance)"
                 if c.get("separate_heads") else "input, and one hidden layer shared by both heads")
  config = lambda describe: _ours(configs, describe)
  rows = [
      ("Concrete layers", layout, "one per dense layer, each head its own (5 in all)",
       "L268-272"),
      ("regularisers", config(lambda c: f"weight l^2/N with l = {c['length_scale']:g}, "
                              "dropout 2/N"),
       "wd = l^2/N, dd = 2/N; l = 1e-4 on the synthetic task", "L180, L264-265"),
      ("initial p, temperature", config(lambda c: f"{c['init_rate']:g}, {c['temperature']:g}"),
       "0.1 (init_min = init_max), 0.1", "L81-82, L129"),
      ("network", "one hidden layer of the protocol's n_hidden.txt units, heteroscedastic head",
       "3 x 1024 ReLU, heteroscedastic head (synthetic task); the paper's UCI network was not "
       "readable here", "L174, L268-272"),
      ("training", config(lambda c: f"Adam, batch {c['batch_size']}, n_epochs.txt x "
                          f"{c['epochs_multiplier']} epochs"),
       "Adam, batch 20, 2-2,000 epochs by N (about 1,000-2,000 steps)", "L170-179, L282-285"),
      ("MC samples at test", config(lambda c: f"{c['mc_samples']}"), "20", "L177"),
      ("test log-likelihood", "per point: log-mean-exp over samples, then the mean",
       "log-mean-exp over samples of the sum over points, / N", "L320-326"),
  ]
  return [{"setting": a, "ours": b, "reference": c, "source": d} for a, b, c, d in rows]


def _plot_rates(workdir: str, path: str) -> None:
  """Learned p against epochs (mean over splits), one panel per dataset."""
  results = {name: reporting.load_json(os.path.join(workdir, name, "results.json"))
             for name in uci.UCI_DATASETS}
  results = {n: r for n, r in results.items() if r is not None and r.get("rate_history")}
  if not results:
    return
  plt = reporting.pyplot()
  fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
  for ax, (name, result) in zip(axes[0], results.items(), strict=True):
    names = result.get("rate_names", ["input", "hidden"])
    history = result["rate_history"]
    # Records written before they carried their epoch: equal segments from epoch 0.
    epochs = [h["epoch"] if isinstance(h, dict) else result["epochs"] * (i + 1) / len(history)
              for i, h in enumerate(history)]
    values = [h["value"] if isinstance(h, dict) else h for h in history]
    for j, rate in enumerate(names):
      ax.plot(epochs, [v[j] for v in values], "o-", ms=3, label=f"p ({rate})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(f"{name}: learned p (mean over splits)")
    ax.legend(fontsize=8)
  reporting.save_figure(fig, path)


if __name__ == "__main__":
  main()
