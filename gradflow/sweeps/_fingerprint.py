"""Fingerprints: what a stored point was computed from, hashed so that a store never returns a
result of another computation.

A point's identity is what it computes, not what its parts are called: the jaxpr of the model
and of the loss traced at the problem's shapes (with the constants they close over), the bytes
of every array, the solve options, and every callable that shapes the record (a `measure`).
Editing the body of a model (`jnp.tanh` -> `jnp.sin`) under the same name changes its jaxpr;
editing a `measure` written in numpy changes its bytecode. Both are stable across processes and
runs. A JAX upgrade that traces a model to another jaxpr, or a Python upgrade that compiles a
`measure` to other bytecode, makes older points refuse to resume, naming the part: the honest
outcome, since nothing shows that the old numbers are what the new code computes.
"""

import dataclasses
import functools
import hashlib
import re
import types
from typing import Any

import jax
import numpy as np

FORMAT = 3
"""The fingerprint scheme's version, stored with every point: a point stored under another
scheme is refused with a message that says so (not that the problem changed)."""

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX_DEPTH = 6


def stable_repr(obj: Any) -> str:
    """`repr(obj)` without memory addresses (`<function f at 0x7f...>` -> `<function f>`), so
    that it is the same in every process and every run."""
    return _ADDRESS.sub("", repr(obj))


def _feed_array(h: "hashlib._Hash", leaf: Any) -> None:
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"|array {a.dtype.str} {a.shape}|".encode())
    h.update(a.tobytes())


def _feed_code(h: "hashlib._Hash", code: types.CodeType, seen: set[int], depth: int) -> None:
    # The bytecode, the names it reads and its constants (nested functions' code included).
    h.update(f"|code {code.co_name} {code.co_argcount} {code.co_kwonlyargcount}|".encode())
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const, seen, depth)
        else:
            h.update(f"|const {type(const).__qualname__} {stable_repr(const)}|".encode())


def _feed_function(h: "hashlib._Hash", fn: types.FunctionType, seen: set[int], depth: int) -> None:
    h.update(f"|function {fn.__module__}.{fn.__qualname__}|".encode())
    if id(fn) in seen or depth >= _MAX_DEPTH:
        return
    seen = seen | {id(fn)}
    _feed_code(h, fn.__code__, seen, depth)
    cells = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # an empty cell
            cells.append(None)
    _feed(h, (cells, fn.__defaults__, fn.__kwdefaults__), seen, depth + 1)
    # The globals it reads that the user can edit in place: values, arrays, and functions of
    # the same module (a helper in the same notebook). Modules and library objects are named.
    for name in _global_names(fn.__code__):
        if name not in fn.__globals__:
            continue
        value = fn.__globals__[name]
        h.update(f"|global {name}|".encode())
        if isinstance(value, types.ModuleType):
            h.update(f"|module {value.__name__}|".encode())
        elif isinstance(value, types.FunctionType) and value.__module__ != fn.__module__:
            h.update(f"|function {value.__module__}.{value.__qualname__}|".encode())
        elif isinstance(value, type):
            h.update(f"|class {value.__module__}.{value.__qualname__}|".encode())
        else:
            _feed(h, value, seen, depth + 1)


def _global_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _global_names(const)
    return sorted(set(names))


def _feed(h: "hashlib._Hash", obj: Any, seen: set[int] | None = None, depth: int = 0) -> None:
    seen = set() if seen is None else seen
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    # The tree structure carries the types and static fields (widths, activations, `center`).
    h.update(stable_repr(treedef).encode())
    for leaf in leaves:
        if isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
            _feed_array(h, leaf)
        elif isinstance(leaf, functools.partial) and depth < _MAX_DEPTH:
            h.update(b"|partial|")
            _feed(h, (leaf.func, leaf.args, leaf.keywords), seen, depth + 1)
        elif isinstance(leaf, types.MethodType) and depth < _MAX_DEPTH:
            h.update(b"|method|")
            _feed(h, (leaf.__func__, leaf.__self__), seen, depth + 1)
        elif isinstance(leaf, types.FunctionType):
            _feed_function(h, leaf, seen, depth)
        elif callable(leaf) and not isinstance(leaf, type) and _is_user_object(leaf):
            # A callable instance (a class with `__call__`): its class's code and its state.
            cls = type(leaf)
            h.update(f"|callable {cls.__module__}.{cls.__qualname__}|".encode())
            call = getattr(cls, "__call__", None)
            if isinstance(call, types.FunctionType):
                _feed_function(h, call, seen, depth + 1)
            state = getattr(leaf, "__dict__", None)
            if state is not None and depth < _MAX_DEPTH:
                _feed(h, dict(sorted(state.items())), seen, depth + 1)
        else:
            h.update(f"|{type(leaf).__qualname__} {stable_repr(leaf)}|".encode())


def _is_user_object(obj: Any) -> bool:
    module = getattr(type(obj), "__module__", "") or ""
    return not module.startswith(("builtins", "jax", "jaxlib", "numpy", "equinox", "diffrax"))


def tree_fingerprint(tree: Any) -> str:
    """A short hash of a PyTree: the bytes, dtype and shape of every array leaf, and the tree
    structure (types, static fields). A function is hashed by its bytecode, constants,
    closure, default arguments and the globals it reads (values and functions of its own
    module), so an edited function (same name, other body) has another fingerprint. Equal for
    equal trees in every process and every run of one Python version."""
    h = hashlib.sha256()
    _feed(h, tree)
    return h.hexdigest()[:16]


def _program(closed: Any) -> str:
    h = hashlib.sha256()
    h.update(stable_repr(closed.jaxpr).encode())
    for c in closed.consts:
        _feed_array(h, c)
    return h.hexdigest()[:16]


def computation_fingerprint(fn: Any, *args: Any) -> str:
    """The fingerprint of what `fn(*args)` computes: its jaxpr traced at the shapes and dtypes
    of `args` (every primitive, literal constant and nested program) and the bytes of the
    arrays it closes over. The values of `args` are not part of it."""
    return _program(jax.make_jaxpr(fn)(*args))


def _trace(name: str, fn: Any, *args: Any) -> Any:
    try:
        return jax.make_jaxpr(fn)(*args)
    except Exception as exc:  # noqa: BLE001 - re-raised with the part named
        raise ValueError(
            f"gradflow could not trace the problem's `{name}` to fingerprint what it computes "
            f"({type(exc).__name__}: {exc}). `{name}` must be a function JAX can trace at the "
            "problem's shapes."
        ) from exc


def problem_fingerprint(problem: Any) -> dict[str, str]:
    """The identity of a [`gradflow.Problem`][], one hash per part, so that a refusal can say
    which part changed:

    - `apply`: the jaxpr of `apply(params0, inputs)` traced at the problem's shapes, with the
      arrays it closes over (a model edited in place, e.g. `jnp.tanh` -> `jnp.sin` under the same
      name, or a changed global constant, changes it; so may a JAX upgrade);
    - `loss`: the loss's jaxpr at the outputs' shape, its type and its arrays (the targets);
    - `params0`, `inputs`: the bytes, dtype and shape of every array and the tree structure;
    - `alpha`, `center`.
    """
    # One trace of the model (its output shape comes from the same jaxpr).
    model = _trace("apply", problem.apply, problem.params0, problem.inputs)
    out = model.out_avals[0]
    outputs = jax.ShapeDtypeStruct(out.shape, problem.dtype)
    loss = _trace("loss", lambda loss, y: loss(y), problem.loss, outputs)
    ident = {
        "apply": _program(model),
        "params0": tree_fingerprint(problem.params0),
        "inputs": tree_fingerprint(problem.inputs),
        "loss": tree_fingerprint((_program(loss), problem.loss)),
        "alpha": tree_fingerprint(problem.alpha),
        "center": tree_fingerprint(problem.center),
    }
    # Any further field of the problem is hashed as a tree.
    for f in dataclasses.fields(problem):
        if f.name not in ident:
            ident[f.name] = tree_fingerprint(getattr(problem, f.name))
    return ident
