"""Write benchmarks/RESULTS.md from the recorded results in benchmarks/results/*.json.

    python benchmarks/make_results_md.py            # rewrite RESULTS.md
    python benchmarks/make_results_md.py --check    # exit 1 if RESULTS.md is out of date

A table per op and dtype, the geomean ratio against the baseline, the date, card and commit of each
result, and a plain OLD NUMBERS warning on results measured before the newest commit touching csrc/
or more than 30 days ago. The logic lives in fastconv/bench/results.py (tested in tests/bench/).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fastconv.bench.results import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["markdown", *sys.argv[1:]]))
