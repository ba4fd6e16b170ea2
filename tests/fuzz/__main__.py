"""`make fuzz`: the contract fuzz test with a large budget, its report printed.

FUZZ_EXAMPLES (default 100) is the number of cases per operation and mode (tests/fuzz/harness.py);
at 100 that is over 5,000 requests across all 17 operations. Exits non-zero on any finding.
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest


def main() -> int:
    os.environ.setdefault("FUZZ_EXAMPLES", "100")
    test = pathlib.Path(__file__).with_name("test_contract_fuzz.py")
    # -s: the report is printed even when the run passes; no per-test timeout for a long run
    return int(pytest.main([str(test), "-q", "-s", "-p", "no:cacheprovider", "--timeout=0"]))


if __name__ == "__main__":
    sys.exit(main())
