"""Run every benchmark of this folder once, each writing its JSON to results/bench/.

    python benchmarks/run_all.py            (make bench)

Each benchmark reports a ratio measured within one run, since shared machines are noisy; see
README ("Measured costs") for the figures and the commands behind them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path("results/bench")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        rc = subprocess.call([sys.executable, str(script), "--out", str(OUT / f"{script.stem}.json")])
        if rc:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
