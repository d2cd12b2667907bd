"""The query core speaks domain records: it imports no generated protobuf module and no grpc.

The servicer converts at the boundary (`modsnet.runtime.convert`); the core reaches the other services
through the typed clients of `modsnet.runtime.stubs`, which take and return the records of
`modsnet.data.graph`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "services" / "query" / "core.py"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (inside functions and TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _forbidden(module: str) -> bool:
    return module == "grpc" or module.startswith(("grpc.", "grpc_")) or module.startswith("modsnet.v1")


def test_the_query_core_imports_no_protobuf_and_no_grpc() -> None:
    assert not sorted(m for m in imported_modules(CORE) if _forbidden(m))


def test_the_check_sees_a_protobuf_import(tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.py"
    leaky.write_text("def f():\n    from modsnet.v1 import common_pb2 as pb\n    import grpc\n")
    assert sorted(m for m in imported_modules(leaky) if _forbidden(m)) == [
        "grpc",
        "modsnet.v1",
        "modsnet.v1.common_pb2",
    ]
