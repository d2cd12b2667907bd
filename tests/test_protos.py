"""The committed generated code matches protos/ (regenerated into a temp folder and compared)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modsnet.offline.protogen import ROOT


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    # In a process of its own: protoc forks its plugins, and a fork beside this session's gRPC threads aborts.
    done = subprocess.run(
        [sys.executable, "-m", "modsnet.offline.protogen", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    generated = {p.name: p.read_bytes() for p in (tmp_path / "modsnet" / "v1").glob("*.py*")}
    committed = {p.name: p.read_bytes() for p in (ROOT / "modsnet" / "v1").glob("*.py*")}
    stale = sorted(name for name in generated.keys() | committed.keys() if generated.get(name) != committed.get(name))
    assert not stale, f"modsnet/v1 is out of date for {stale}: run `make protos` and commit"
