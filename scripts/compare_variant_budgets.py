"""Does the demo's budget change what the variant comparison decides? A generated table.

    python scripts/compare_variant_budgets.py DEMO_WORKDIR FULL_WORKDIR

Reads the ``metrics.json`` of a demo run (20 epochs, tune scales 0.5 and 1) and of a
``:full`` run (40 epochs, 0.5, 1 and 1.5) and writes ``results/variant-comparison-budget.md``:
for every variant and baseline, the paired difference of the MC NLL and MC accuracy under
each budget, and whether the verdict (better / worse / undecided at 2 s.e.) is the same.
"""

import json
import os
import sys

from dropjax import io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = (("nll_mc", "NLL (MC)"), ("accuracy_mc", "acc (MC)"))


def _verdict(pair, metric):
  if not pair[f"{metric}_decided"]:
    return "undecided"
  better = pair[metric] > 0 if metric.startswith("accuracy") else pair[metric] < 0
  return "better" if better else "worse"


def _load(workdir):
  with open(os.path.join(workdir, "metrics.json")) as f:
    out = json.load(f)
  return out, {(p["variant"], p["baseline"]): p for p in out["paired"]}


def main(demo_dir: str, full_dir: str) -> None:
  demo, demo_pairs = _load(demo_dir)
  full, full_pairs = _load(full_dir)
  lines = [
      "| variant | minus | " + " | ".join(
          f"Δ {h} demo | Δ {h} full | same verdict" for _, h in METRICS) + " |",
      "|---|---|" + "---|---|---|" * len(METRICS),
  ]
  same = total = 0
  for key, d in demo_pairs.items():
    f = full_pairs.get(key)
    if f is None:
      continue
    cells = []
    for metric, _ in METRICS:
      vd, vf = _verdict(d, metric), _verdict(f, metric)
      same += vd == vf
      total += 1
      cells += [f"{d[metric]:+.4f} ± {d[metric + '_se']:.4f} ({vd})",
                f"{f[metric]:+.4f} ± {f[metric + '_se']:.4f} ({vf})",
                "yes" if vd == vf else "**no**"]
    lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
  minutes = lambda out: out["compute_seconds"] / 60
  text = (
      f"The demo's budget against the `:full` protocol (variant comparison on the digits, "
      f"{len(demo['rows'][0]['accuracy_mc_seeds'])} seeds each; paired differences ± s.e., "
      "verdicts at 2 s.e.). The demo took "
      f"{minutes(demo):.1f} min of compute, `:full` {minutes(full):.1f} min. "
      f"{same} of {total} verdicts agree.\n\n" + "\n".join(lines) + "\n")
  io.write_text_atomic(os.path.join(ROOT, "results", "variant-comparison-budget.md"), text)
  print(text)


if __name__ == "__main__":
  if len(sys.argv) != 3:
    raise SystemExit(__doc__)
  main(sys.argv[1], sys.argv[2])
