"""Run every benchmark in bench/ in turn and print its output: `make bench` or `.venv/bin/python bench/run_all.py`.

A benchmark is any bench/*.py except this file and helpers named `_*.py`. Each runs with the venv's python
from the repository root; arguments after `--` are passed to every benchmark (e.g. `-- --seconds 3`).
`--only NAME` (repeatable) runs only the named ones (file name with or without .py). Exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def discover() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    argv = sys.argv[1:]
    passed = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    scripts = discover()
    if args.only:
        wanted = {name.removesuffix(".py") for name in args.only}
        unknown = wanted - {p.stem for p in scripts}
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(p.stem for p in scripts)})")
        scripts = [p for p in scripts if p.stem in wanted]
    if args.list:
        print("\n".join(str(p.relative_to(ROOT)) for p in scripts))
        return 0
    python = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
    outcomes = []
    for script in scripts:
        cmd = [python, str(script.relative_to(ROOT)), *passed]
        print(f"\n=== {script.name} " + "=" * max(3, 76 - len(script.name)), flush=True)
        started = time.monotonic()
        code = subprocess.call(cmd, cwd=ROOT)  # output goes straight to ours
        outcomes.append((script.name, code, time.monotonic() - started))
    print("\n=== summary " + "=" * 68)
    for name, code, seconds in outcomes:
        print(f"{name:40} {'ok' if code == 0 else f'FAILED (exit {code})':>18}  {seconds:6.1f} s")
    return 1 if any(code for _, code, _ in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
