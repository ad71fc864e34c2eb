"""`make bench`: timing figures for the validator (printed, never asserted)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def timed(args: list[str], runs: int = 3) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, cwd=REPO_ROOT, capture_output=True, check=False)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples)


def main() -> None:
    python = sys.executable
    cases = {
        "validate (whole repository)": [python, "-m", "vllm_gitops.cli.validate", "-f", "json"],
        "validate overlays/prod": [python, "-m", "vllm_gitops.cli.validate", "overlays/prod",
                                   "-f", "json"],
        "plan overlays/prod": [python, "-m", "vllm_gitops.cli.plan", "overlays/prod"],
    }
    print(f"{'case':<32} {'median s':>9} {'best s':>8}")
    for name, args in cases.items():
        median, best = timed(args)
        print(f"{name:<32} {median:>9.2f} {best:>8.2f}")


if __name__ == "__main__":
    main()
