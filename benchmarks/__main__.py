"""Run the benchmarks: `python -m benchmarks` (all) or `python -m benchmarks mta`."""

import importlib
import sys

SUITES = ["mta", "mail", "grading", "lecture"]

if __name__ == "__main__":
    chosen = sys.argv[1:] or SUITES
    for name in chosen:
        if name not in SUITES:
            sys.exit(f"unknown benchmark suite {name!r}; choose from {', '.join(SUITES)}")
        importlib.import_module(f"benchmarks.{name}").main()
