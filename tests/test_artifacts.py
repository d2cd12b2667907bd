"""Runnable model artifacts: shipped in a bundle, kept in storage, downloaded checksum-verified, exported."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from modsnet.client import Client, _verified
from modsnet.data.bundle import read_bundle
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.errors import ConfigError, DataLoss, InvalidArgument, NotFound
from modsnet.v1 import query_pb2 as qpb


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


def test_a_client_with_only_the_query_address_lists_shows_and_downloads(
    tmp_path: Path, bundle_with_artifacts: Path
) -> None:
    with EmbeddedCluster(tmp_path / "home", import_builtins=False) as cluster:
        cluster.client.import_library(bundle_with_artifacts)
        client = Client(query=cluster.addresses["query"])
        try:
            assert [lib.name for lib in client.list_libraries()] == ["arts"]
            model = client.find_model("m0")
            assert model.library == "arts" and model.metadata["artifact"] == "m0.onnx" and model.artifact_blob_id
            expected = (bundle_with_artifacts / "artifacts" / "m0.onnx").read_bytes()
            target = client.download_model("m0", tmp_path / "m0.onnx")
            assert target.read_bytes() == expected and not (tmp_path / "m0.onnx.part").exists()
            assert (
                client.read_artifact("m1", "arts") == (bundle_with_artifacts / "artifacts/specs/m1.json").read_bytes()
            )
            with pytest.raises(NotFound, match="no library has a model 'nope'"):
                client.find_model("nope")
            with pytest.raises(InvalidArgument, match="model_id is required"):
                client.find_model("")
            assert client.find_model("m0").model_id == "m0"  # the service answers on after bad requests
            with pytest.raises(ConfigError, match="knowledge"):
                client.delete_library("arts")  # administration is not behind the query address
        finally:
            client.close()


def test_a_corrupt_stored_artifact_is_data_loss_and_nothing_is_written(
    tmp_path: Path, bundle_with_artifacts: Path
) -> None:
    with EmbeddedCluster(tmp_path / "home", import_builtins=False) as cluster:
        client = cluster.client
        client.import_library(bundle_with_artifacts)
        blob_id = client.find_model("m0", "arts").artifact_blob_id
        stored = next((cluster.home / "blobs" / "blobs").rglob(blob_id))
        stored.write_bytes(b"tampered" + stored.read_bytes()[8:])
        with pytest.raises(DataLoss):
            client.download_model("m0", tmp_path / "m0.onnx", library="arts")
        assert not list(tmp_path.glob("m0.onnx*"))


def test_the_client_checks_what_arrived_against_the_header() -> None:
    data = b"runnable bytes" * 10
    header = qpb.ArtifactHeader(model_id="m", sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert b"".join(_verified(header, [data[:50], data[50:]])) == data
    with pytest.raises(DataLoss, match="arrived corrupt"):
        b"".join(_verified(header, [data[:50], b"X" + data[51:]]))
    with pytest.raises(DataLoss, match=f"{len(data) - 1} of {len(data)} bytes"):
        b"".join(_verified(header, [data[:-1]]))
