"""Runnable model artifacts: shipped in a bundle, kept in storage, downloaded checksum-verified, exported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from modsnet.data.bundle import read_bundle
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.errors import InvalidArgument, NotFound


@pytest.fixture
def bundle_with_artifacts(tmp_path: Path, synth_bundle: Path) -> Path:
    folder = Path(shutil.copytree(synth_bundle, tmp_path / "arts"))
    (folder / "library.yaml").write_text((folder / "library.yaml").read_text().replace("name: synth", "name: arts"))
    models = pd.read_csv(folder / "models.csv")
    models["artifact"] = ["m0.onnx", "specs/m1.json", "", "", "", ""]
    models.to_csv(folder / "models.csv", index=False)
    (folder / "artifacts" / "specs").mkdir(parents=True)
    (folder / "artifacts" / "m0.onnx").write_bytes(b"\x08\x07fake-onnx-bytes" * 100)
    (folder / "artifacts" / "specs" / "m1.json").write_text('{"kind": "find_peaks", "prominence": 0.1}')
    return folder


def test_artifacts_are_stored_downloaded_and_exported(
    tmp_path: Path, bundle_with_artifacts: Path, synth_bundle: Path
) -> None:
    with EmbeddedCluster(tmp_path / "home", import_builtins=False) as cluster:
        client = cluster.client
        client.import_library(bundle_with_artifacts)
        client.import_library(synth_bundle)
        onnx = client.download_model("m0", tmp_path / "m0.onnx", library="arts")
        assert onnx.read_bytes() == (bundle_with_artifacts / "artifacts" / "m0.onnx").read_bytes()
        out = tmp_path / "out"
        out.mkdir()
        spec = client.download_model("m1", out, library="arts")
        assert spec == out / "m1.json" and "find_peaks" in spec.read_text()
        with pytest.raises(NotFound, match="no runnable artifact"):
            client.download_model("m2", tmp_path, library="arts")
        with pytest.raises(InvalidArgument, match="several libraries"):
            client.find_model("m0")
        exported = read_bundle(client.export_library("arts", tmp_path / "exported"))
        assert exported.artifacts == read_bundle(bundle_with_artifacts).artifacts


def test_an_artifact_listed_but_missing_refuses_the_bundle(tmp_path: Path, bundle_with_artifacts: Path) -> None:
    (bundle_with_artifacts / "artifacts" / "m0.onnx").unlink()
    with pytest.raises(InvalidArgument, match=r"models\.csv line 2, column 'artifact': 'm0\.onnx'"):
        read_bundle(bundle_with_artifacts)
