"""The committed generated code matches protos/ (regenerated into a temp folder and compared)."""

from __future__ import annotations

from pathlib import Path

from modsnet.offline.protogen import ROOT, generate


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    generated = {p.name: p.read_bytes() for p in generate(tmp_path)}
    committed = {p.name: p.read_bytes() for p in (ROOT / "modsnet" / "v1").glob("*.py*")}
    stale = sorted(name for name in generated.keys() | committed.keys() if generated.get(name) != committed.get(name))
    assert not stale, f"modsnet/v1 is out of date for {stale}: run `make protos` and commit"
