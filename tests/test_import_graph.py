"""The package's import graph, read from the source (every import, lazy ones inside functions
included): no circles, and the rollout container's modules reach nothing of the trainer's."""
from __future__ import annotations

import ast
import tomllib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLLOUT_ENTRY_POINTS = ["seesaw.rollout.server", "seesaw.rollout.launch", "seesaw.rollout.worker_extension",
                        "seesaw.rollout.vllm_plugin", "seesaw.checkpoint_engine.weights.vllm_engine"]


@cache
def modules() -> dict[str, Path]:
    """Module name -> file, from pyproject's package-dir mapping."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found: dict[str, Path] = {}
    for package in config["packages"]:
        folder = ROOT / config["package-dir"].get(package, package.replace(".", "/"))
        if package not in config["package-dir"]:  # a subpackage of a mapped one
            parent = next(p for p in sorted(config["package-dir"], key=len, reverse=True) if package.startswith(p + "."))
            folder = ROOT / config["package-dir"][parent] / package.removeprefix(parent + ".").replace(".", "/")
        for path in folder.glob("*.py"):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


@cache
def imports_of(name: str) -> frozenset[str]:
    """The project's modules `name` imports, anywhere in its file (its own parent packages aside)."""
    path = modules()[name]
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            named.add(base)
            named.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(m for m in named if m in modules() and m != name and not name.startswith(m + "."))


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for module in imports_of(todo.pop()) - seen:
            seen.add(module)
            todo.append(module)
    return seen


def test_no_module_imports_itself_through_others() -> None:
    circles = {tuple(sorted({name} | {m for m in reachable(name) if name in reachable(m)}))
               for name in modules() if name in reachable(name)}
    assert not circles, f"import circles: {sorted(circles)}"


def test_the_rollout_container_imports_nothing_of_the_trainer() -> None:
    assert "seesaw.rollout.server" in modules() and "seesaw.trainer.server" in modules()
    for entry in ROLLOUT_ENTRY_POINTS:
        trainer = sorted(m for m in reachable(entry) if m == "seesaw.trainer" or m.startswith("seesaw.trainer."))
        assert not trainer, f"{entry} reaches {trainer}"
