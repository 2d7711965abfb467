"""Writes results/uci-concrete-table.md (+ .csv) from a `uci_concrete` workdir.

    python scripts/uci_concrete_table.py --workdir runs/uci_concrete

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
  args = parser.parse_args()

  def fmt(pair, digits=2):
    return "-" if pair is None else f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"

  rows, lines = [], []
  for name in uci.UCI_DATASETS:
    result = reporting.load_json(os.path.join(args.workdir, name, "results.json"))
    if result is None:
      continue
    grid = result.get("grid", {})
    seconds = sum(result["seconds"].values())
    rows.append({"dataset": name, "rate_input": result["rate_input"][0],
                 "rate_hidden": result["rate_hidden"][0], "grid_rate": grid.get("rate", [None])[0],
                 "rmse": result["mc_rmse"][0], "grid_rmse": grid.get("mc_rmse", [None])[0],
                 "ll": result["log_likelihood"][0],
                 "grid_ll": grid.get("log_likelihood", [None])[0],
                 "coverage_95": result["coverage_0.95"][0], "seconds": seconds})
    lines.append(
        f"| {name} | {result['n_splits']} | {fmt(result['rate_input'], 3)} | "
        f"{fmt(result['rate_hidden'], 3)} | {fmt(grid.get('rate'), 3)} | "
        f"{fmt(result['mc_rmse'])} | {fmt(grid.get('mc_rmse'))} | "
        f"{fmt(result['log_likelihood'])} | {fmt(grid.get('log_likelihood'))} | "
        f"{100 * result['coverage_0.95'][0]:.1f} | {seconds / 60:.1f} min |")
  header = [
      "Concrete dropout (learned p, heteroscedastic head) against grid-searched MC dropout "
      "(our run of the 2018 protocol) on the same splits, epochs and 10,000 MC samples. "
      "Mean ± standard error over splits. `bash scripts/reproduce_uci_concrete.sh`.",
      "",
      "| dataset | splits | learned p (input) | learned p (hidden) | grid p | RMSE (concrete) | "
      "RMSE (grid) | LL (concrete) | LL (grid) | 95% PI coverage % | time |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  io.write_text_atomic(os.path.join(args.out, "uci-concrete-table.md"),
                       "\n".join(header + lines) + "\n")
  io.write_csv_atomic(os.path.join(args.out, "uci_concrete_table.csv"), rows)
  print("\n".join(header + lines))


if __name__ == "__main__":
  main()
