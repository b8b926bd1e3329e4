r"""Cold and warm start of `gradflow` commands: the persistent compilation cache at work.

Each command runs in a fresh subprocess (`python -m gradflow.cli ...`), three ways:

- `no cache`: `--no-cache` (every program compiled);
- `cold`: `GRADFLOW_CACHE_DIR` set to a new, empty folder (compiled and written to the cache);
- `warm`: the same folder again (programs read back from the cache), `--repeats` times.

Reported: wall seconds of each run (interpreter start, imports, tracing, compilation or cache
reads, the run itself, writing figures) and the cache's size after the cold run. Every run writes
into a temporary output folder that is removed afterwards.

Run: `python benchmarks/bench_startup.py [--json startup.json] [--repeats 2]`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "alpha-sweep (3 alphas)": ["alpha-sweep", "--alphas", "1,10,100", "--no-progress"],
    "reproduce tau-sweep --quick": ["reproduce", "tau-sweep", "--quick", "--no-progress"],
}


def run(args: list[str], env: dict[str, str], out: Path) -> float:
    argv = [sys.executable, "-m", "gradflow.cli", *args]
    if args[0] != "--help":
        argv += ["--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return seconds


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per command")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--only", default=None, help="comma-separated first words of the commands to run"
    )
    args = parser.parse_args()
    args.only = None if args.only is None else args.only.split(",")
    rows = {}
    print(f"{'command':<30} {'no cache s':>10} {'cold s':>8} {'warm s':>8} {'cache MB':>9}")
    for name, cmd in COMMANDS.items():
        if args.only and name.split()[0] not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            base = {k: v for k, v in os.environ.items() if k != "GRADFLOW_NO_CACHE"}
            env = dict(base, GRADFLOW_CACHE_DIR=str(tmp / "cache"))
            if cmd[0] == "--help":
                no_cache = run(cmd, env, tmp / "o0")
            else:
                no_cache = run([*cmd, "--no-cache"], env, tmp / "o0")
            cold = run(cmd, env, tmp / "o1")
            warm = [run(cmd, env, tmp / f"o{2 + i}") for i in range(args.repeats)]
            size = folder_size(tmp / "cache") if (tmp / "cache").exists() else 0
        rows[name] = {
            "argv": ["gradflow", *cmd],
            "no_cache_seconds": no_cache,
            "cold_seconds": cold,
            "warm_seconds": warm,
            "cache_bytes": size,
        }
        print(f"{name:<30} {no_cache:>10.2f} {cold:>8.2f} {min(warm):>8.2f} {size / 1e6:>9.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
