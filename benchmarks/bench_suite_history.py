r"""The test suite's time against an earlier commit's, on this machine and dependency stack.

A suite's time recorded in an earlier session depends on that session's machine and on the
versions of JAX and XLA then installed, so it is compared here with the same earlier suite run
now. The script extracts commit `--base` (default: `675cbf8`, the state at which the test suite
ran its 191 tests in 5.6 minutes, install included) into a temporary folder with `git archive`,
and runs in fresh subprocesses, one after the other:

- `base`: the earlier suite, its own code and its own pytest configuration (that commit's
  `pyproject.toml` and `tests/conftest.py`), through `PYTHONPATH`;
- `same tests now`: the same tests in today's suite, with today's code and configuration. A
  test is matched by its node id, else by its name when exactly one file of today's suite has
  it (tests moved to the files that mirror the package), else through `RENAMES`;
- with `--full`: today's whole suite.

Each run's wall time and CPU time (user + system, its subprocesses included) is printed with
its ratio to `base`. The environment's `XLA_FLAGS` and `JAX_DISABLE_MOST_OPTIMIZATIONS` are
removed for every run, so that each suite applies its own settings.

Run: `python benchmarks/bench_suite_history.py [--base REV] [--full] [--json PATH]` from the
repository root (about 12 minutes on 2 cores, 16 with `--full`).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Tests renamed since the base commit: base node id -> today's node id.
RENAMES = {
    "tests/test_cli.py::test_alpha_sweep_command_writes_figure_and_json": (
        "tests/test_cli.py::test_alpha_sweep_command_writes_figure_and_json_and_resumes"
    ),
    "tests/test_cli.py::test_notebook_runs[paper_figures.ipynb]": (
        "tests/test_experiments.py::test_paper_figures_notebook_runs_and_asserts_its_claims"
    ),
    "tests/test_cli.py::test_notebook_runs[quickstart.ipynb]": (
        "tests/test_cli.py::test_quickstart_notebook_runs_and_asserts_its_claims"
    ),
    "tests/test_cli.py::test_notebook_runs[theorems.ipynb]": (
        "tests/check/test_checks.py::test_theorems_notebook_runs_and_asserts_its_claims"
    ),
    "tests/test_store.py::test_store_refuses_another_configuration": (
        "tests/sweeps/test_store.py::test_store_refuses_another_configuration_naming_the_keys"
    ),
}


def _env(pythonpath: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("XLA_FLAGS", "JAX_DISABLE_MOST_OPTIMIZATIONS", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _collect(cwd: Path, env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if "::" in line]


def match(base_ids: list[str], ids: list[str]) -> tuple[list[str], list[str]]:
    """Today's node id of each base test, and the base tests with none."""
    by_name: dict[str, list[str]] = {}
    for node in ids:
        by_name.setdefault(node.split("::", 1)[1], []).append(node)
    current = set(ids)
    found, missing = [], []
    for node in base_ids:
        same_name = by_name.get(node.split("::", 1)[1], [])
        if node in current:
            found.append(node)
        elif len(same_name) == 1:
            found.append(same_name[0])
        elif RENAMES.get(node) in current:
            found.append(RENAMES[node])
        else:
            missing.append(node)
    return found, missing


def _timed(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0:
        raise RuntimeError(f"pytest exited {proc.returncode} in {cwd}: {summary}\n{proc.stderr}")
    return {"wall_s": wall, "cpu_s": cpu, "summary": summary}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="675cbf8", help="the earlier commit (default: 675cbf8)")
    ap.add_argument("--full", action="store_true", help="also time today's whole suite")
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        base_root = Path(tmp) / "base"
        base_root.mkdir()
        archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, capture_output=True)
        if archive.returncode != 0:
            sys.exit(
                f"--base {args.base}: git archive failed ({archive.stderr.decode().strip()}); "
                "give a commit of this repository's history (a shallow clone may lack it)."
            )
        subprocess.run(["tar", "-x", "-C", str(base_root)], input=archive.stdout, check=True)
        shared = ROOT.parent / "shared"
        if shared.is_dir():
            (Path(tmp) / "shared").symlink_to(shared)
        base_env, env = _env(base_root), _env(None)

        base_ids = _collect(base_root, base_env)
        ids = _collect(ROOT, env)
        found, missing = match(base_ids, ids)
        print(f"base {args.base}: {len(base_ids)} tests; today's suite: {len(ids)} tests")
        print(f"matched in today's suite: {len(found)}; without a match: {len(missing)}")
        for node in missing:
            print(f"  no match: {node}")

        # Each row is printed as soon as its run ends, so a failing later run loses none.
        print(f"\n{'run':<18} {'wall s':>8} {'ratio':>6} {'CPU s':>8} {'ratio':>6}  pytest")
        plan = [("base", [], base_root, base_env), ("same tests now", found, ROOT, env)]
        if args.full:
            plan.append(("whole suite now", [], ROOT, env))
        runs: dict[str, dict[str, Any]] = {}
        for name, ids_, cwd, run_env in plan:
            r = runs[name] = _timed(ids_, cwd, run_env)
            base = runs["base"]
            print(
                f"{name:<18} {r['wall_s']:8.1f} {r['wall_s'] / base['wall_s']:6.2f} "
                f"{r['cpu_s']:8.1f} {r['cpu_s'] / base['cpu_s']:6.2f}  {r['summary']}",
                flush=True,
            )
    if args.json:
        payload = {
            "base": args.base,
            "base_tests": len(base_ids),
            "tests_now": len(ids),
            "matched": len(found),
            "missing": missing,
            "runs": runs,
            "cpu_count": os.cpu_count(),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
