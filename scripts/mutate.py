#!/usr/bin/env python
"""Mutation testing for the pure core: does the test suite notice a plausible bug?

Each mutant changes one spot of one module (a comparison ``<`` -> ``<=``, ``+`` -> ``-``,
``and`` -> ``or``, a constant ``n`` -> ``n + 1``, ``True`` -> ``False``, ``max`` -> ``min``,
``round`` -> ``int``, a dropped ``not`` or keyword argument, ``continue`` -> ``break``,
``+=`` -> ``-=``) and runs the chosen tests against it. A mutant is *killed* when a test
fails (or hangs past the timeout), and *survives* when every test still passes.

It runs without writing the mutant to disk. pytest collects the tests once; then, per
mutant, a forked child compiles the mutated source, puts it in place of the module (in
``sys.modules`` and in every module global that refers to it or to something defined in
it) and runs the collected tests. ``--fresh`` runs a whole pytest session per mutant
instead (slower, for tests that build state at collection time).

    python scripts/mutate.py omgclip/dataset/segment.py tests/test_segment.py
    python scripts/mutate.py omgclip/dataset/build.py tests/test_build_unit.py \
        --only resolve_strides,assign_splits --json benchmarks/results/mutate_build.json

Strings, f-strings, docstrings, ``raise`` and ``assert`` messages, the arguments of
``log.*(...)`` calls and ``np.errstate(...)`` are never mutated (a changed message or a
silenced warning is not a bug the tests are meant to catch). Exit code 0; the kill
rate and the surviving mutants (line, what changed) are printed.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_COMPARE_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                 ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                 ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
               ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv}
_BOOL_SWAP = {ast.And: ast.Or, ast.Or: ast.And}
_CALL_SWAP = {"max": "min", "min": "max", "round": "int", "any": "all", "all": "any"}


#: The pure core and the tests that guard it: ``python scripts/mutate.py --suite``.
SUITE = [
    ("omgclip/dataset/segment.py", ["tests/test_segment.py"], "", "numpy,pytest"),
    ("omgclip/labels.py", ["tests/test_labels.py"], "", "pytest"),
    ("omgclip/learn/metrics.py", ["tests/test_evaluate.py", "-k", "metrics"], "", "numpy,pandas,pytest,torch,torchmetrics"),
    ("omgclip/faces/tracking.py", ["tests/test_tracking.py", "tests/test_identity.py", "-k",
                                   "test_tracking or never_crosses_a_cut"], "", "numpy,pytest"),
    ("omgclip/dataset/build.py", ["tests/test_build_synthetic.py", "-k", "not command_line and not kill_minus"],
     "resolve_strides,assign_splits,_plan_jobs,_pending,_check_config,_remove_stale_temps,_collect",
     "numpy,pandas,pytest,cv2"),
    ("omgclip/dataset/tasks.py", ["tests/test_build_synthetic.py", "-k", "not command_line and not kill_minus"],
     "build_source", "numpy,pandas,pytest,cv2"),
    ("omgclip/apps/predict.py", ["tests/test_predict.py", "-k", "windows or two_faces or stride or smooth or "
                                 "without_a_face or segment_faces or to_source"],
     "_windows,_segment_faces,_to_source", "numpy,pandas,pytest,torch,cv2"),
    ("omgclip/apps/report.py", ["tests/test_predict.py", "-k", "smoothing_windows or smooth_probs"], "smooth_probs",
     "numpy,pandas,pytest,torch,cv2"),
]


@dataclass
class Mutant:
    number: int
    line: int
    change: str
    function: str
    outcome: str = ""      #: killed / survived / timeout


# --------------------------------------------------------------------------- finding mutants
def _skip_ids(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, f-strings, log calls, raise/warn messages."""
    skip: set[int] = set()

    def drop(node: ast.AST) -> None:
        skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                drop(body[0])
        elif isinstance(node, ast.JoinedStr):
            drop(node)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            drop(node.exc)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id in ("log", "logging", "warnings")):
            drop(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "errstate":
            drop(node)  # only silences floating-point warnings
        elif isinstance(node, ast.Assert):
            drop(node)
    return skip


def _functions(tree: ast.Module) -> dict[int, str]:
    """Node id -> qualified name of the function that contains it ('' at module level)."""
    owner: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str, current: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = current
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                visit(child, name + ".", name)
            else:
                visit(child, prefix, current)
            owner[id(child)] = name

    visit(tree, "", "")
    return owner


def _candidates(node: ast.AST) -> list[tuple[str, callable]]:
    """Possible one-spot changes of ``node``: (description, apply(node) -> replacement)."""
    out: list[tuple[str, callable]] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            new = _COMPARE_SWAP.get(type(op))
            if new:
                def apply(n, i=i, new=new):
                    n.ops[i] = new()
                    return n
                out.append((f"{type(op).__name__} -> {new.__name__}", apply))
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
        new = _BINOP_SWAP[type(node.op)]
        if not (isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):
            def apply(n, new=new):
                n.op = new()
                return n
            out.append((f"{type(node.op).__name__} -> {new.__name__}", apply))
    elif isinstance(node, ast.AugAssign) and type(node.op) in (ast.Add, ast.Sub):
        new = ast.Sub if isinstance(node.op, ast.Add) else ast.Add
        def apply(n, new=new):
            n.op = new()
            return n
        out.append((f"augmented {type(node.op).__name__} -> {new.__name__}", apply))
    elif isinstance(node, ast.BoolOp):
        new = _BOOL_SWAP[type(node.op)]
        def apply(n, new=new):
            n.op = new()
            return n
        out.append((f"{type(node.op).__name__} -> {new.__name__}", apply))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        out.append((f"drop {type(node.op).__name__}", lambda n: n.operand))
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            out.append((f"{v} -> {not v}", lambda n: ast.Constant(not n.value)))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((f"{v!r} -> {v + 1!r}", lambda n: ast.Constant(n.value + 1)))
    elif isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id in _CALL_SWAP:
            new = _CALL_SWAP[node.func.id]
            def apply(n, new=new):
                n.func = ast.Name(new, ast.Load())
                return n
            out.append((f"{node.func.id}() -> {new}()", apply))
        for i, kw in enumerate(node.keywords):
            if kw.arg is not None:
                def apply(n, i=i):
                    del n.keywords[i]
                    return n
                out.append((f"drop keyword {kw.arg}=", apply))
    elif isinstance(node, ast.Continue):
        out.append(("continue -> break", lambda n: ast.Break()))
    elif isinstance(node, ast.Break):
        out.append(("break -> continue", lambda n: ast.Continue()))
    return out


def find_mutants(source: str, only: set[str] | None) -> tuple[list[Mutant], list[tuple[int, int]]]:
    """All mutants of ``source``; also (node position, candidate index) to apply each."""
    tree = ast.parse(source)
    skip, owner = _skip_ids(tree), _functions(tree)
    mutants, where = [], []
    for pos, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        func = owner.get(id(node), "")
        if only and not any(func == o or func.startswith(o + ".") for o in only):
            continue
        for k, (desc, _) in enumerate(_candidates(node)):
            mutants.append(Mutant(len(mutants), getattr(node, "lineno", 0), desc, func))
            where.append((pos, k))
    return mutants, where


def mutated_source(source: str, pos: int, k: int) -> ast.Module:
    tree = ast.parse(source)
    nodes = list(ast.walk(tree))
    target = nodes[pos]
    _, apply = _candidates(target)[k]

    class Swap(ast.NodeTransformer):
        def generic_visit(self, node):
            if node is target:
                return apply(node)
            return super().generic_visit(node)

    new = Swap().visit(tree)
    return ast.fix_missing_locations(new)


# --------------------------------------------------------------------------- running
def _module_name(path: Path) -> str:
    rel = path.resolve().relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


def _run_child(module: str, path: Path, tree: ast.Module | None, pytest_args: list[str]) -> None:
    """In the forked child: install the mutant, run pytest, exit with its code."""
    import importlib
    import types

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    if tree is not None:
        parent_name, _, leaf = module.rpartition(".")
        mod = types.ModuleType(module)
        mod.__file__ = str(path)
        mod.__package__ = parent_name
        sys.modules[module] = mod  # before anything imports the original
        exec(compile(tree, str(path), "exec"), mod.__dict__)
        if parent_name:
            setattr(importlib.import_module(parent_name), leaf, mod)
    import pytest

    code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *pytest_args])
    os._exit(int(code))


def _wait(pid: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.02)


def run_one(module: str, path: Path, tree: ast.Module | None, pytest_args: list[str], timeout: float) -> str:
    """Fresh mode: fork, install the mutant, run a whole pytest session in the child."""
    pid = os.fork()
    if pid == 0:
        try:
            _run_child(module, path, tree, pytest_args)
        except BaseException:  # a mutant that cannot even be imported is killed
            os._exit(3)
    return _wait(pid, timeout)


# --------------------------------------------------------------------------- collected mode
def _install(module: str, path: Path, tree: ast.Module) -> None:
    """In a forked child whose modules are already imported: put the mutant in place of
    ``module`` everywhere it is referenced (module globals that hold the module, or a
    function, class or non-empty container defined in it)."""
    import importlib
    import types

    orig = sys.modules.get(module)
    new = types.ModuleType(module)
    new.__file__ = str(path)
    new.__package__ = module.rpartition(".")[0]
    sys.modules[module] = new
    exec(compile(tree, str(path), "exec"), new.__dict__)
    parent, _, leaf = module.rpartition(".")
    if parent:
        setattr(importlib.import_module(parent), leaf, new)
    if orig is None:
        return
    by_id = {}
    for name, value in vars(orig).items():
        if name.startswith("__"):
            continue
        defined_here = getattr(value, "__module__", None) == module and callable(value)
        container = isinstance(value, (tuple, list, dict, set, frozenset)) and len(value) > 0
        if (defined_here or container) and hasattr(new, name):
            by_id[id(value)] = getattr(new, name)
    scalars = {name: value for name, value in vars(orig).items()  # NAME = 3 imported as NAME
               if not name.startswith("__") and isinstance(value, (int, float, str, bool)) and hasattr(new, name)}
    for mod in list(sys.modules.values()):
        space = getattr(mod, "__dict__", None)
        if not isinstance(space, dict) or mod is new:
            continue
        for name, value in list(space.items()):
            if value is orig:
                space[name] = new
            elif id(value) in by_id:
                space[name] = by_id[id(value)]
            elif name in scalars and value is scalars[name]:
                space[name] = getattr(new, name)


class _Collected:
    """pytest plugin: collect once in this process, then fork per mutant and run the
    collected tests in the child against the installed mutant."""

    def __init__(self, module: str, path: Path, source: str, mutants: list, where: list, timeout: float):
        self.module, self.path, self.source = module, path, source
        self.mutants, self.where, self.timeout = mutants, where, timeout
        self.baseline = ""

    def _child(self, session, tree, timings: str | None = None) -> None:
        from _pytest.runner import runtestprotocol

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        if tree is not None:
            _install(self.module, self.path, tree)
        items, passed = session.items, 0
        for i, item in enumerate(items):
            reports = runtestprotocol(item, nextitem=items[i + 1] if i + 1 < len(items) else None, log=False)
            if any(r.failed for r in reports):
                os._exit(1)
            passed += any(r.when == "call" and r.passed for r in reports)
            if timings:
                with open(timings, "a") as fh:
                    fh.write(json.dumps([item.nodeid, sum(r.duration for r in reports)]) + "\n")
        os._exit(0 if passed else 5)  # no test ran (all skipped?): not a survivor, not a pass

    def _run(self, session, tree, timeout: float, timings: str | None = None) -> str:
        pid = os.fork()
        if pid == 0:
            try:
                self._child(session, tree, timings)
            except BaseException:
                os._exit(3)
        return _wait(pid, timeout)

    def pytest_runtestloop(self, session):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            timings = os.path.join(tmp, "timings.jsonl")
            self.baseline = self._run(session, None, self.timeout * 3, timings)
            took = dict(json.loads(line) for line in open(timings)) if os.path.exists(timings) else {}
        if self.baseline != "survived":
            return True
        # the quickest tests first: most mutants are killed by the first test that notices
        session.items.sort(key=lambda item: took.get(item.nodeid, 0.0))
        for m, (pos, k) in zip(self.mutants, self.where):
            m.outcome = self._run(session, mutated_source(self.source, pos, k), self.timeout)
            print("." if m.outcome != "survived" else "S", end="", file=sys.__stdout__, flush=True)
        return True


def mutate_module(module_path: Path, tests: list[str], only: set[str] | None, timeout: float,
                  limit: int | None = None, fresh: bool = False) -> dict:
    """Run every mutant of one module against ``tests``; print and return a summary."""
    path = module_path.resolve()
    module = _module_name(path)
    source = path.read_text()
    mutants, where = find_mutants(source, only)
    if limit:
        mutants, where = mutants[:limit], where[:limit]
    start = time.monotonic()
    if fresh:
        baseline = run_one(module, path, None, tests, timeout * 3)
        if baseline == "survived":
            for m, (pos, k) in zip(mutants, where):
                m.outcome = run_one(module, path, mutated_source(source, pos, k), tests, timeout)
                print("." if m.outcome != "survived" else "S", end="", flush=True)
    else:
        import pytest

        plugin = _Collected(module, path, source, mutants, where, timeout)
        pytest.main(["-q", "-p", "no:cacheprovider", *tests], plugins=[plugin])
        baseline = plugin.baseline
    if baseline != "survived":
        raise SystemExit(f"{module}: the tests fail (or are all skipped) without any mutation: fix that first")
    print()
    killed = sum(m.outcome != "survived" for m in mutants)
    rate = killed / len(mutants) if mutants else 1.0
    lines = source.splitlines()
    for m in mutants:
        if m.outcome == "survived":
            code = lines[m.line - 1].strip() if 0 < m.line <= len(lines) else ""
            print(f"  survived  line {m.line:4d}  {m.function or '<module>'}: {m.change}    | {code[:70]}")
    seconds = time.monotonic() - start
    print(f"{module}: {killed} of {len(mutants)} mutants killed ({100 * rate:.1f}%) in {seconds:.0f} s", flush=True)
    return {"module": module, "tests": tests, "only": sorted(only or []), "mutants": len(mutants),
            "killed": killed, "kill_rate": round(rate, 4), "seconds": round(seconds),
            "survivors": [asdict(m) for m in mutants if m.outcome == "survived"]}


def _machine() -> dict:
    import platform
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"date": time.strftime("%Y-%m-%d"), "commit": commit, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "load_average_1min": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("module", type=Path, nargs="?", help="the .py file to mutate (inside the repository)")
    ap.add_argument("tests", nargs="*", help="pytest arguments: test files, -k expressions, ...")
    ap.add_argument("--suite", action="store_true", help="run the whole SUITE (the pure core) instead")
    ap.add_argument("--pick", default="", help="with --suite: only the modules whose path contains one of these "
                                               "(comma-separated)")
    ap.add_argument("--only", default="", help="comma-separated functions (qualified names) to mutate")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per mutant (a hang counts as killed)")
    ap.add_argument("--preload", default="numpy,pandas,pytest",
                    help="third-party modules the parent imports once (comma-separated)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N mutants (a quick look)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--fresh", action="store_true",
                    help="a whole pytest session per mutant (slower; default: collect once, fork per mutant)")
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    if args.suite:
        picks = [x for x in args.pick.split(",") if x]
        plan = [(Path(m), t, set(filter(None, o.split(","))) or None, p) for m, t, o, p in SUITE
                if not picks or any(x in m for x in picks)]
    elif args.module and args.tests:
        plan = [(args.module, args.tests, set(filter(None, args.only.split(","))) or None, args.preload)]
    else:
        ap.error("give a module and its tests, or --suite")
    for _, _, _, preload in plan:
        for name in filter(None, preload.split(",")):
            __import__(name)
    results = [mutate_module(m, t, o, args.timeout, args.limit, args.fresh) for m, t, o, _ in plan]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**_machine(), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
