#!/usr/bin/env bash
# Kept so that the commands printed in committed reports still run; the one implementation
# is scripts/reproduce.py (python scripts/reproduce.py concrete_mlp[:OPTION] --workdir DIR).
#   bash scripts/reproduce_concrete_mnist.sh [option] [workdir]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
option=${1:-mnist}
spec=concrete_mlp${option:+:$option}
exec "$PY" scripts/reproduce.py "$spec" ${2:+--workdir="$2"}
