"""The documentation site: `mkdocs build --strict` passes, a broken cross-reference fails it,
and the API pages cover every public name."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Material's banner about MkDocs 2.0 is printed on every build; it is not a build warning.
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml")]
        + ["-d", str(site)],
        cwd=root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_strict_build_passes(tmp_path):
    run = build(ROOT, tmp_path / "site")
    assert run.returncode == 0, run.stdout + run.stderr
    # The cross-references of the docstrings resolve to the API pages' anchors.
    page = (tmp_path / "site" / "api" / "solve" / "index.html").read_text()
    assert 'id="gradflow.solve"' in page and 'href="../problem/#gradflow.Problem"' in page


def test_broken_reference_fails_the_build(tmp_path):
    # The same tree with one docstring pointing at a name that does not exist.
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("docs", "gradflow", "theory"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    solve = tree / "gradflow" / "_solve.py"
    source = solve.read_text()
    good = "**Returns:** a [`gradflow.Solution`][]."
    assert source.count(good) == 1
    solve.write_text(source.replace(good, "**Returns:** a [`gradflow.NoSuchSolution`][]."))
    run = build(tree, tmp_path / "site")
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "Could not find cross-reference target 'gradflow.NoSuchSolution'" in out, out
    assert "Aborted with 1 warnings in strict mode" in out, out


def _public_names(path: Path, package: str) -> dict[str, str | None]:
    """The public names a module defines or (a package's `__init__.py`) re-exports from inside
    the package, each with the full name of the object it re-exports from a public submodule
    (`None` for its own definitions and re-exports from private modules)."""
    reexports = path.name == "__init__.py"
    names: dict[str, str | None] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = None
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update({t.id: None for t in targets if isinstance(t, ast.Name)})
        elif reexports and isinstance(node, ast.ImportFrom) and node.level > 0:
            # Relative imports only: `from collections.abc import Callable` is not an export.
            public_source = node.module and not node.module.startswith("_")
            for a in node.names:
                if node.module is None:
                    continue  # `from . import data`: a submodule, with a page of its own
                source = f"{package}.{node.module}.{a.name}" if public_source else None
                names[a.asname or a.name] = source
    return {k: v for k, v in names.items() if not k.startswith("_")}


NAMESPACES = {
    "gradflow": ROOT / "gradflow" / "__init__.py",
    "gradflow.models": ROOT / "gradflow" / "models" / "__init__.py",
    "gradflow.data": ROOT / "gradflow" / "data.py",
    "gradflow.check": ROOT / "gradflow" / "check" / "__init__.py",
    "gradflow.experiments": ROOT / "gradflow" / "experiments" / "__init__.py",
    "gradflow.plot": ROOT / "gradflow" / "plot.py",
    "theory": ROOT / "theory" / "__init__.py",
}


def test_api_pages_cover_the_public_namespace():
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), flags=re.M))
    missing = []
    for namespace, path in NAMESPACES.items():
        # Each namespace but the root has a page that opens with its module docstring.
        assert namespace == "gradflow" or namespace in documented, namespace
        for name, source in _public_names(path, namespace).items():
            if f"{namespace}.{name}" not in documented and source not in documented:
                missing.append(f"{namespace}.{name}")
    assert not missing, f"public names without an entry in docs/api/: {missing}"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ._solve import solve as solve\n", {"solve": None}),
        ("from .models import f as f\n", {"f": "pkg.models.f"}),
        ("from collections.abc import Callable\nX = 1\ndef _g(): ...\n", {"X": None}),
        ("from . import data as data\nclass A: ...\n", {"A": None}),
    ],
)
def test_public_names(tmp_path, source, expected):
    path = tmp_path / "__init__.py"
    path.write_text(source)
    assert _public_names(path, "pkg") == expected


def test_plain_modules_export_only_their_own_definitions(tmp_path):
    path = tmp_path / "plot.py"
    path.write_text("from ._sweep import AlphaSweep\nLABELS = {}\ndef plot(): ...\n")
    assert _public_names(path, "pkg") == {"LABELS": None, "plot": None}


# ------------------------------------------------------------------------------ the README


def _fenced_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """The fenced code blocks of `language` in the Markdown file `path`, as (the line of the
    opening fence, the code), in order."""
    text = path.read_text()
    pattern = rf"^```{language}[ \t]*\n(.*?)^```[ \t]*$"
    return [
        (text.count("\n", 0, m.start()) + 1, m[1])
        for m in re.finditer(pattern, text, flags=re.M | re.S)
    ]


def test_fenced_blocks_are_read_from_the_markdown(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```python\nx = 1\n```\n\ntext\n```bash\nls\n```\n```python\ny = x\n```\n"
    )
    assert _fenced_blocks(page, "python") == [(3, "x = 1\n"), (11, "y = x\n")]
    assert _fenced_blocks(page, "bash") == [(8, "ls\n")]


def _run_python_blocks(path: Path) -> dict:
    """Run the Python blocks of the Markdown file `path` in order, in one namespace, as a reader
    pastes them into a Python prompt; returns the namespace. A failing block is named by its
    line in `path`."""
    blocks = _fenced_blocks(path, "python")
    assert blocks, path
    namespace: dict = {"__name__": "__main__"}
    for line, code in blocks:
        # Padded so that a traceback names the page's own line.
        compiled = compile("\n" * line + code, str(path), "exec")
        try:
            exec(compiled, namespace)
        except Exception as exc:
            name = path.relative_to(ROOT)
            raise AssertionError(f"the python block at {name}:{line} failed: {exc!r}") from exc
    return namespace


def test_every_python_block_of_the_readme_runs_as_written(tmp_path, monkeypatch):
    # The README's Python blocks are one session (taken from README.md itself).
    monkeypatch.chdir(tmp_path)  # the blocks may write (a sweep's store)
    _run_python_blocks(ROOT / "README.md")


def test_every_python_block_of_the_extending_guide_runs_as_written(tmp_path, monkeypatch):
    # docs/extending.md: a model, a loss, two solvers, an experiment and a theorem check added
    # from user code, each block ending with its check against an independent answer (closed
    # form, the square loss, a convergence order, Tsit5 at a tight tolerance, the tangent
    # kernel's modes), which the run asserts.
    monkeypatch.chdir(tmp_path)
    namespace = _run_python_blocks(ROOT / "docs" / "extending.md")
    # The page's own classes, each a subclass of the base it documents.
    import diffrax

    import gradflow as gf

    assert issubclass(namespace["ResidualNet"], gf.models.AbstractModel)
    assert issubclass(namespace["HuberLoss"], gf.AbstractLoss)
    assert issubclass(namespace["SSPRK3"], diffrax.AbstractERK)
    assert issubclass(namespace["RKC1"], gf.AbstractStabilizedSolver)
    # The experiment: flows and a computed point through one runner; its claims hold, and a
    # second run reads every point back.
    assert issubclass(namespace["LazyGap"], gf.experiments.AbstractExperiment)
    assert namespace["again"].reused == ["alpha=10", "alpha=100", "alpha=1000", "closed_form"]
    # The theorem check: a record of its own, run by gf.check.run, passing on both problems.
    record = namespace["KERNEL_REGIME"]
    assert isinstance(record, gf.check.Theorem) and record.name not in gf.check.THEOREMS
    assert [r.verdict for r in namespace["reports"]] == ["pass", "pass"]


def _readme_commands() -> list[tuple[int, list[str]]]:
    """Every `gradflow ...` command in the README's bash blocks, as (line, its words)."""
    import shlex

    commands = []
    for line, code in _fenced_blocks(ROOT / "README.md", "bash"):
        for offset, text in enumerate(code.splitlines()):
            for part in text.split("#")[0].split("&&"):
                words = shlex.split(part)
                if words and words[0] == "gradflow":
                    commands.append((line + 1 + offset, words))
    return commands


def test_every_gradflow_command_of_the_readme_parses(capsys):
    # Each `gradflow` command of a bash block is parsed by the real parser (not run: they
    # compute for minutes); a template (NAME, [--option]) gets its subcommand's --help.
    from gradflow.cli import build_parser, main

    commands = _readme_commands()
    assert len(commands) >= 3
    for line, words in commands:
        template = any(w.isupper() or w.startswith("[") for w in words[1:])
        if template:
            with pytest.raises(SystemExit) as exc:
                main([words[1], "--help"])
            assert exc.value.code == 0, f"README.md:{line}: {' '.join(words)}"
            continue
        try:
            args = build_parser().parse_args(words[1:])
        except SystemExit:
            raise AssertionError(
                f"README.md:{line}: {' '.join(words)}: {capsys.readouterr().err}"
            ) from None
        assert args.command == words[1]
