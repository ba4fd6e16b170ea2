"""`make bench`: run every benchmark in turn and print its figures.

Figures come from a shared 2-core machine: read them as orders of magnitude.
`make bench BENCH=me` (a comma-separated list) runs a subset.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import tests.bench


def main() -> None:
    wanted = {w.strip() for w in os.environ.get("BENCH", "").split(",") if w.strip()}
    names = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(tests.bench.__path__)
        if m.name.startswith("bench_")
    )
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"== {name}", flush=True)
        importlib.import_module(f"tests.bench.bench_{name}").main()


if __name__ == "__main__":
    main()
