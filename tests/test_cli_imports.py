"""A CLI command pays only for what it uses: no modality's heavy libraries at import.

Importing torch, ONNX Runtime, the tokenizer or Pillow costs seconds; the CLI, the client and the query
core must not import them before a search of that modality needs them (a table search needs none of them
on the client side, and the query core only scikit-learn and pandas for it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torch_geometric", "onnxruntime", "tokenizers", "PIL", "fairmat_readers_xrd")


def _imported_after(statement: str) -> list[str]:
    """The heavy top-level packages in sys.modules after running `statement` in a fresh interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    return sorted(loaded & set(HEAVY))


def test_cli_client_query_core_and_embedded_cluster_import_no_modality_library() -> None:
    # The embedded cluster's services load torch (the GNN) and a modality's extractor on first use, not at import.
    assert _imported_after("import modsnet.cli, modsnet.client, services.query.core, modsnet.embedded") == []


def test_features_of_a_table_load_no_other_modality(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("a,b,class\n" + "".join(f"{i},{i % 7},{'xy'[i % 2]}\n" for i in range(60)))
    statement = (
        "from modsnet.data.exemplar import load_exemplar, dataset_features\n"
        f"e = load_exemplar({str(table)!r}, name='t.csv')\n"
        "assert dataset_features(e)[0].startswith('tabular')"
    )
    assert _imported_after(statement) == []


def test_an_image_upload_still_loads_its_libraries(tmp_path: Path) -> None:
    # The other side of laziness: the modality that is used gets its parser (a real PNG is decoded).
    from PIL import Image

    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / label / f"{i}.png")
    statement = (
        "from modsnet.data.exemplar import load_exemplar\n"
        f"e = load_exemplar({str(folder)!r}, name='images')\n"
        "assert e.modality == 'image' and len(e.images) == 6"
    )
    assert "PIL" in _imported_after(statement)
