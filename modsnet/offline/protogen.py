"""Generate `modsnet/v1` (messages, gRPC stubs and typed `.pyi` stubs) from `protos/`.

The generated code is committed so that an installed package needs no code generator; the test suite
regenerates it into a temporary folder and fails when the committed files differ.
Usage: python -m modsnet.offline.protogen [OUTPUT_ROOT]   (default: the repository root)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"


def generate(out_root: Path) -> list[Path]:
    """Write the generated files under `out_root/modsnet/v1/`; returns their paths."""
    from grpc_tools import protoc  # a development dependency

    plugin = shutil.which("protoc-gen-mypy_grpc") or str(Path(sys.executable).parent / "protoc-gen-mypy_grpc")
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "modsnet" / "v1").glob("*.proto"))
    target = out_root / "modsnet" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy_grpc={plugin}",
        f"--mypy_grpc_out={out_root}",
        *sources,
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    init = target / "__init__.py"
    init.write_text('"""Generated from protos/modsnet/v1 by `make protos`; do not edit."""\n')
    return sorted(target.glob("*.py*"))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    for path in generate(out):
        print(path)
