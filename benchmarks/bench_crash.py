"""The SIGKILL crash test with more trials than CI runs (default 40)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

from benchmarks.common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    env = dict(os.environ, NOVELGEN_CRASH_TRIALS=str(args.trials))
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_crash_recovery.py",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", tail)) else 0
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", tail)) else 0
    result = {
        "trials": args.trials,
        "passed": passed,
        "failed": failed,
        "summary": tail,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps({"benchmark": "crash", "machine": machine(), "result": result}, indent=1))
    sys.exit(0 if proc.returncode == 0 else 1)


if __name__ == "__main__":
    main()
