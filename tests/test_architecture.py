"""The rules that keep the house in shape (docs/architecture.md), checked by walking every module's imports.

Imports are read from the source (AST), function-level imports included: a lazy import still runs when the
function does. Imports under `if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("query", "recommender", "knowledge", "storage")
# Code that runs in a served process or in the user's CLI/SDK: everything but the offline tools.
SERVING = (
    "services",
    "modsnet.runtime",
    "modsnet.data",
    "modsnet.features",
    "modsnet.models",
    "modsnet.client",
    "modsnet.cli",
    "modsnet.embedded",
)
OFFLINE = "modsnet.offline"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for top in ("modsnet", "services"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "v1" in path.relative_to(ROOT).parts[:2]:
                continue  # generated protobuf code
            found[_module_name(path)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk_runtime(other)
            continue
        yield child
        yield from _walk_runtime(child)


@cache
def imports_of(module: str, *, type_checking: bool = False) -> frozenset[str]:
    """Every module name `module` imports at run time (absolute; `from a import b` counts `a` and `a.b`);
    with `type_checking`, also those imported only for the type checker."""
    return _imports_in(modules()[module], module, type_checking=type_checking)


def _imports_in(path: Path, module: str, *, type_checking: bool) -> frozenset[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree) if type_checking else _walk_runtime(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return frozenset(found)


def _within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _reached_from(start: str) -> dict[str, str]:
    """Project modules reachable from `start` through run-time imports, each with the module that imported it."""
    seen = {start: ""}
    todo = [start]
    while todo:
        current = todo.pop()
        for name in imports_of(current):
            if name in modules() and name not in seen:
                seen[name] = current
                todo.append(name)
    return seen


def _chain(reached: dict[str, str], name: str) -> str:
    chain = [name]
    while reached[chain[-1]]:
        chain.append(reached[chain[-1]])
    return " <- ".join(chain)


def test_the_walk_sees_the_project() -> None:
    """The checks below mean something only if the walk finds the modules and their imports."""
    assert {"modsnet.cli", "services.query.core", "modsnet.offline.zoo.tabular", "modsnet.models.probing"} <= set(
        modules()
    )
    assert "grpc" in imports_of("services.query.servicer") or "grpc" in imports_of("modsnet.runtime.server")
    assert "modsnet.offline.devservers.redis" in _reached_from("modsnet.offline.localcluster")


@pytest.mark.parametrize("module", [m for m in sorted(modules()) if _within(m, SERVING)])
def test_serving_code_never_reaches_the_offline_tools(module: str) -> None:
    """Generators, importers and dev servers are never imported by serving code, directly or through another module,
    so a plain install serves every path without their dependencies."""
    reached = _reached_from(module)
    offline = sorted(name for name in reached if _within(name, OFFLINE))
    assert not offline, f"{module} reaches offline code: {_chain(reached, offline[0])}"


@pytest.mark.parametrize("service", SERVICES)
def test_cores_import_no_grpc_and_no_wire_format(service: str) -> None:
    """A core is plain Python: the servicer converts protobuf at the boundary; the core never sees grpc or `_pb2`."""
    found = imports_of(f"services.{service}.core", type_checking=True)  # a type from _pb2 is the wire format too
    assert not _wire(found), f"services/{service}/core.py imports {_wire(found)}"


def _wire(names: frozenset[str]) -> list[str]:
    return sorted(name for name in names if _within(name, ("grpc", "modsnet.v1", "grpc_health", "grpc_reflection")))


def test_the_core_check_sees_a_lazy_or_type_only_protobuf_import(tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.py"
    leaky.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from modsnet.v1 import query_pb2\n"
        "def f():\n    import grpc\n"
    )
    found = _imports_in(leaky, "leaky", type_checking=True)
    assert _wire(found) == ["grpc", "modsnet.v1", "modsnet.v1.query_pb2"]
    assert _wire(_imports_in(leaky, "leaky", type_checking=False)) == ["grpc"]


@pytest.mark.parametrize("service", SERVICES)
def test_services_talk_over_grpc_only(service: str) -> None:
    """No service imports another service's package: they meet only through their gRPC APIs (modsnet.runtime.stubs)."""
    others = tuple(f"services.{other}" for other in SERVICES if other != service)
    crossing = sorted(
        f"{module} -> {name}"
        for module in modules()
        if _within(module, f"services.{service}")
        for name in imports_of(module)
        if _within(name, others)
    )
    assert not crossing, crossing


def test_shared_runtime_imports_no_service() -> None:
    """modsnet.runtime and modsnet.data are shared by every service, so they cannot depend on any one of them."""
    crossing = sorted(
        f"{module} -> {name}"
        for module in modules()
        if _within(module, ("modsnet.runtime", "modsnet.data", "modsnet.features", "modsnet.models"))
        for name in imports_of(module)
        if _within(name, "services")
    )
    assert not crossing, crossing


def _doc_paths() -> set[str]:
    import re

    text = (ROOT / "docs" / "architecture.md").read_text()
    return {token for token in re.findall(r"`([\w./<>-]+)`", text) if "/" in token or token.endswith(".py")}


def test_the_architecture_page_names_only_what_exists_and_every_package() -> None:
    """docs/architecture.md matches the tree: each path it names exists, and it names every package of modsnet/."""
    missing = []
    for token in sorted(_doc_paths()):
        if "<" in token:
            continue  # a pattern such as modsnet/features/<modality>.py
        found = (ROOT / token).exists() or any(
            (base / token).exists() for base in [*ROOT.glob("services/**/"), *ROOT.glob("modsnet/**/")]
        )
        if not found:
            missing.append(token)
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"
    packages = {p.parent.name for p in (ROOT / "modsnet").glob("*/__init__.py")}
    text = (ROOT / "docs" / "architecture.md").read_text()
    unnamed = sorted(p for p in packages if f"modsnet/{p}/" not in text)
    assert not unnamed, f"docs/architecture.md does not describe modsnet/{unnamed}"
