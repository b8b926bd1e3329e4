"""No module inside gradflow imports the package root: the root imports them all, so such an
import closes a cycle (root -> `_sweep` -> `_store` -> `_io` -> root) and reads a namespace that
may still be half-built."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import gradflow as gf
from gradflow.sweeps._io import environment

PACKAGE = Path(gf.__file__).parent


def _submodules() -> frozenset[str]:
    """The names `from gradflow import X` may take without touching the root's namespace."""
    names = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    names |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    return frozenset(names)


def root_imports(source: str, path: Path, submodules: frozenset[str]) -> list[str]:
    """The statements of `source` (the module at `path`, relative to the folder that holds
    `gradflow/`) that import the root package's namespace, as `line: statement` strings."""
    # The package relative imports start from: the folder, for a module and an `__init__.py`.
    package = list(path.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for a in node.names:
                # `import gradflow` or `import gradflow.x` (no `as`) binds the root.
                if a.name == "gradflow" or (a.name.startswith("gradflow.") and a.asname is None):
                    found.append(f"{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "gradflow":
                continue
            for a in node.names:
                if a.name not in submodules:
                    found.append(
                        f"{node.lineno}: from {'.' * node.level}{node.module or ''} import {a.name}"
                    )
    return found


def test_no_module_imports_the_package_root():
    submodules = _submodules()
    offenders = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        if file == PACKAGE / "__init__.py":
            continue
        rel = file.relative_to(PACKAGE.parent)
        hits = root_imports(file.read_text(), rel, submodules)
        if hits:
            offenders[str(rel)] = hits
    assert not offenders, f"modules importing the gradflow root namespace: {offenders}"


@pytest.mark.parametrize(
    "path, source, flagged",
    [
        # The cycle this test guards against: `_io.environment` reading the root's version.
        ("gradflow/_io.py", "def f():\n    from . import __version__\n", True),
        ("gradflow/_io.py", "from . import Problem, models\n", True),
        ("gradflow/cli.py", "import gradflow as gf\n", True),
        ("gradflow/cli.py", "import gradflow.models\n", True),
        ("gradflow/check/_x.py", "from .. import __version__\n", True),
        ("gradflow/check/_x.py", "from gradflow import solve\n", True),
        # Submodules, and other packages' namespaces, are fine.
        (
            "gradflow/_io.py",
            "from . import models, data\nfrom ._version import __version__\n",
            False,
        ),
        ("gradflow/check/_cli.py", "from .. import check\n", False),
        ("gradflow/experiments/_cli.py", "from . import EXPERIMENTS\n", False),
        ("gradflow/check/__init__.py", "from . import _base\nfrom ._base import Report\n", False),
        ("gradflow/cli.py", "import gradflow.models as m\nfrom gradflow.plot import f\n", False),
    ],
)
def test_root_import_detector(path, source, flagged):
    assert bool(root_imports(source, Path(path), _submodules())) is flagged


def test_environment_reports_the_package_version():
    assert environment()["gradflow"] == gf.__version__


def test_importing_gradflow_does_not_import_sympy():
    # sympy (and the statements' derivations) cost seconds: gradflow reads theory/'s exponents
    # on first use. The keys of PREDICTED_SLOPES are known without it, the values are not.
    code = (
        "import sys, gradflow as gf\n"
        "assert list(gf.PREDICTED_SLOPES) == ['param_distance', 'param_gap', 'output_gap']\n"
        "assert 'sympy' not in sys.modules and 'theory' not in sys.modules, 'imported'\n"
        "assert gf.PREDICTED_SLOPES['param_gap'] == -2.0\n"
        "assert 'sympy' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
