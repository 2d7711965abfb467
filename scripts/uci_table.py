"""Builds the UCI table from finished runs: ours next to the published numbers, with times.

    python scripts/uci_table.py --workdir runs/uci [--data_dir ../shared/data] [--out results]

Published numbers are read from the data dir, never typed here: the 2018 update from each
dataset's reference log (``uci/<name>/results/log_100_xepochs_1_hidden_layers.txt``) and
the 2016 paper column from the table in ``<data_dir>/README.md``. Writes ``<name>.md`` and
``<name>.csv`` (dashes as underscores; ``--name``, default ``uci-table``) atomically, with the
command that reproduces the runs (``--command``; `scripts/reproduce.py` passes its own).
"""

import argparse
import math
import os
import re

from dropjax import io
from dropjax.data import uci
from dropjax.data.paths import resolve_data_dir
from experiments import reporting

# Row labels of the data README's table.
README_NAMES = {"Boston": "bostonHousing", "Energy": "energy", "Kin8nm": "kin8nm",
                "Naval": "naval-propulsion-plant", "Power": "power-plant",
                "Protein": "protein-tertiary-structure", "Yacht": "yacht"}


def paper_2016(data_dir):
  """``{dataset: ((rmse, se), (ll, se))}`` from the data README's published table."""
  path = os.path.join(data_dir, "README.md")
  if not os.path.exists(path):
    return {}
  number = r"(-?[\d.]+)\+-([\d.]+)"
  out = {}
  for line in open(path):
    m = re.match(rf"\|\s*(\w+)\s*\|\s*{number} / {number}\s*\|", line)
    if m and m.group(1) in README_NAMES:
      v = [float(g) for g in m.groups()[1:]]
      out[README_NAMES[m.group(1)]] = ((v[0], v[1]), (v[2], v[3]))
  return out


def rmse_decimals(rmse: float) -> int:
  """Decimals that show three significant digits of an RMSE (at least 2): Naval's 0.00078
  needs 6, Boston's 2.88 needs 2."""
  return max(2, 2 - math.floor(math.log10(abs(rmse)))) if rmse else 2


def within_band(ours, theirs, higher_is_better):
  diff = ours - theirs[0]
  better = diff > 0 if higher_is_better else diff < 0
  return better or abs(diff) <= 2 * theirs[1]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs/uci")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--out", default="results")
  parser.add_argument("--name", default="uci-table", help="the table's file name, no suffix")
  parser.add_argument("--command", default="python scripts/reproduce.py uci",
                      help="the command that reproduces the runs, printed under the table")
  args = parser.parse_args()
  data_dir = resolve_data_dir(args.data_dir, "UCI")
  paper = paper_2016(data_dir)
  fmt = lambda pair, digits: f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"
  rows, lines = [], []
  for name in uci.UCI_DATASETS:
    result = reporting.load_json(os.path.join(args.workdir, name, "results.json"))
    if result is None:
      continue
    ref = result.get("reference_2018", {})
    coverage = result.get("coverage", {}).get("0.95")
    p16 = paper.get(name)
    digits = rmse_decimals(result["mc_rmse"][0])
    seconds = result["seconds"]
    total = sum(v for k, v in seconds.items() if k != "this_invocation")
    ok_rmse = within_band(result["mc_rmse"][0], ref["mc_rmse"], False) if ref else None
    ok_ll = within_band(result["log_likelihood"][0], ref["log_likelihood"], True) if ref else None
    row = {"dataset": name, "splits": result["n_splits"], "epochs": result["epochs"],
           "mc_samples": result["mc_samples"],
           "rmse_mc": result["mc_rmse"][0], "rmse_mc_se": result["mc_rmse"][1],
           "rmse_2018": ref.get("mc_rmse", (None,))[0], "rmse_2016": p16[0][0] if p16 else None,
           "ll": result["log_likelihood"][0], "ll_se": result["log_likelihood"][1],
           "ll_2018": ref.get("log_likelihood", (None,))[0],
           "ll_2016": p16[1][0] if p16 else None,
           "rmse_weight_scaling": result["weight_scaling_rmse"][0],
           "coverage_95": coverage[0] if coverage else None,
           "within_2018_band": bool(ok_rmse and ok_ll), "seconds": total}
    rows.append(row)
    lines.append(
        f"| {name} | {result['n_splits']} | {result['epochs']} | "
        f"{fmt(result['mc_rmse'], digits)} | {fmt(ref['mc_rmse'], digits) if ref else '-'} | "
        f"{fmt(p16[0], 2) if p16 else '-'} | {fmt(result['log_likelihood'], 3)} | "
        f"{fmt(ref['log_likelihood'], 3) if ref else '-'} | {fmt(p16[1], 2) if p16 else '-'} | "
        f"{result['weight_scaling_rmse'][0]:.{digits}f} | "
        f"{fmt([100 * v for v in coverage], 1) if coverage else '-'} | "
        f"{'yes' if ok_rmse else 'no'} / {'yes' if ok_ll else 'no'} | {total / 60:.1f} min |")
  header = [
      "MC-dropout UCI regression: ours against the 2018 grid-search update (reference logs of "
      "yaringal/DropoutUncertaintyExps) and the 2016 paper (Gal & Ghahramani, ICML 2016, "
      "Table 1). Mean ± standard error over splits; RMSE of the MC mean and test "
      "log-likelihood in original units, 10,000 MC samples; WS = weight-scaling "
      "(deterministic) RMSE; 95% PI: percentage of test targets inside the central 95% "
      "interval of the moment-matched predictive N(mean, var + 1/tau). "
      "Band: |ours - 2018| <= 2 s.e.(2018), or better. Time: both "
      f"phases on the 2-core CPU here. `{args.command}`.",
      "",
      "| dataset | splits | epochs | RMSE (ours) | RMSE (2018) | RMSE (2016) | LL (ours) | "
      "LL (2018) | LL (2016) | WS RMSE (ours) | 95% PI coverage % | in band (RMSE / LL) | "
      "time |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  in_band = sum(r["within_2018_band"] for r in rows)
  all_seconds = sum(r["seconds"] for r in rows)
  footer = ["", f"{in_band} of {len(rows)} datasets within the band on both RMSE and LL. "
            f"All {len(rows)} took {all_seconds / 3600:.1f} hours on the 2-core CPU here "
            f"(the sum of the time column)."] if rows else []
  text = "\n".join(header + lines + footer) + "\n"
  io.write_text_atomic(os.path.join(args.out, f"{args.name}.md"), text)
  io.write_csv_atomic(os.path.join(args.out, f"{args.name.replace('-', '_')}.csv"), rows)
  print(text)


if __name__ == "__main__":
  main()
