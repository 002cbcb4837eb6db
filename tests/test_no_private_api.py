"""No private attribute or module of Lightning, MLflow or Optuna is used by the library, the shipped tasks or the
paper package: what a new release of a dependency may change without notice (issue 30).

The rule, on the code's syntax tree: an attribute ``obj._name`` (also ``getattr(obj, "_name")``,
``obj.__dict__["_name"]``) is allowed only where ``_name`` is a name this project defines itself (a function,
class, assignment target, attribute or parameter of its own code) and is not one of the known private names of
those libraries (:data:`KNOWN_PRIVATE`, refused even on ``self``: a LightningModule's ``self._trainer`` is
Lightning's). Imports of a private module or name of those libraries are refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("lightning_implicit", "datamodules", "paper")
LIBRARIES = {"lightning", "lightning_fabric", "pytorch_lightning", "lightning_utilities", "mlflow", "optuna"}
LIBRARIES |= {"optuna_integration", "torchmetrics"}
# private names of those libraries this project used to reach (and any of their internals it might reach again)
KNOWN_PRIVATE = {
    "_batches_that_stepped",
    "_on_before_step",
    "_on_after_step",
    "_current_fx_name",
    "_trainer",
    "_convert_params",
    "_flatten_dict",
    "_tracking_uri",
    "_tracking_service",
    "_trial_id",
    "_get_stale_trial_ids",
    "_run_id",
    "_mlflow_client",
    "_experiment_id",
    "_max_depth",
    "_summarize_kwargs",
    "_format_summary_table",
    "_storage",
    "_study_id",
    "_results",
    "_logger_connector",
    "_active_loop",
    "_accelerator_connector",
    "_fabric",
}


# the standard library's few underscore names that its own documentation or long practice makes an interface,
# allowed on exactly that module (the rule above is about Lightning, MLflow and Optuna, not about Python)
STDLIB = {
    ("os", "_exit"),  # documented: the process ends without the interpreter's teardown
    ("atexit", "_run_exitfuncs"),  # the atexit handlers run before os._exit (lifecycle.exit_process)
}


def _files() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))


def _own_names(trees: dict[Path, ast.AST]) -> set[str]:
    """Every name the project's own code defines."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
                if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    names.add(str(node.args[1].value))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                registers = ("register_buffer", "register_parameter", "register_module")
                if node.func.attr in registers and node.args and isinstance(node.args[0], ast.Constant):
                    names.add(str(node.args[0].value))
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _violations(path: Path, tree: ast.AST, own: set[str]) -> list[str]:
    out = []
    own = own - KNOWN_PRIVATE

    def bad(name: str) -> bool:
        return _private(name) and (name in KNOWN_PRIVATE or name not in own)

    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            modules = [module] if module else [a.name for a in node.names]
            for mod in modules:
                parts = mod.split(".")
                if parts[0] in LIBRARIES and any(_private(p) for p in parts):
                    out.append(f"{where}: import of the private module {mod}")
            if module and module.split(".")[0] in LIBRARIES:
                out += [f"{where}: import of {module}.{a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and bad(node.attr):
            module = node.value.id if isinstance(node.value, ast.Name) else None
            if (module, node.attr) not in STDLIB:
                out.append(f"{where}: .{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and bad(arg.value):
                    out.append(f"{where}: {node.func.id}(..., {arg.value!r})")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            value = node.slice.value
            if isinstance(value, str) and value in KNOWN_PRIVATE:
                out.append(f"{where}: [{value!r}]")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in KNOWN_PRIVATE:
                out.append(f"{where}: .get({node.args[0].value!r})")
    return out


def test_no_private_attribute_of_lightning_mlflow_or_optuna():
    trees = {p: ast.parse(p.read_text(), str(p)) for p in _files()}
    assert len(trees) > 50  # the scan sees the code
    own = _own_names(trees)
    found = [v for p, t in trees.items() for v in _violations(p, t, own)]
    assert not found, "private attributes of dependencies:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "trainer.fit_loop.epoch_loop._batches_that_stepped += 1",
        "optimizer._on_before_step()",
        "uri = logger._tracking_uri",
        "storage.get_trial(t._trial_id)",
        "getattr(storage, '_get_stale_trial_ids', None)",
        "from mlflow.tracking._tracking_service import utils",
        "from lightning.fabric.utilities.logger import _convert_params",
        "import optuna.storages._heartbeat",
        "self._trainer = None",
        "module.__dict__['_current_fx_name'] = 'x'",
        "trainer = module.__dict__.get('_trainer')",
        "cb = Summary(max_depth=cb._max_depth)",
    ],
)
def test_the_scan_finds_each_kind_of_private_use(code):
    tree = ast.parse(code)
    assert _violations(ROOT / "x.py", tree, own={"_helper"})


def test_the_scan_allows_the_projects_own_private_names():
    tree = ast.parse("self._cache = {}\nx = other._helper()\nfrom lightning_implicit.data import _dataset")
    assert not _violations(ROOT / "x.py", tree, own={"_cache", "_helper", "_dataset"})
