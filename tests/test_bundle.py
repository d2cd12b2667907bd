"""Library bundles: validation with messages naming file, line and column; archives; canonical round trip."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from modsnet.data.bundle import (
    bundle_members,
    canonical,
    pack_bundle,
    pack_members,
    pack_path,
    read_bundle,
    write_bundle,
    zip_members,
)
from modsnet.runtime.errors import InvalidArgument, ResourceExhausted


@pytest.fixture
def bundle_dir(tmp_path: Path, synth_bundle: Path) -> Path:
    return Path(shutil.copytree(synth_bundle, tmp_path / "lib"))


def test_valid_bundle_reads(synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    assert bundle.name == "synth" and bundle.meta["modality"] == "tabular"
    assert len(bundle.models.rows) == 6 and len(bundle.datasets.rows) == 10
    assert len(bundle.interactions.rows) == 60 and "tabular" in bundle.features


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        (
            "interactions.csv",
            lambda t: _set_cell(t, 3, "score", "abc"),
            r"interactions\.csv line 3, column 'score': '\w+' is not a finite number",
        ),
        (
            "interactions.csv",
            lambda t: _set_cell(t, 5, "model_id", "ghost"),
            r"interactions\.csv line 5, column 'model_id': 'ghost' is not in models\.csv",
        ),
        (
            "interactions.csv",
            lambda t: _set_cell(t, 4, "train_seconds", "-1"),
            r"interactions\.csv line 4, column 'train_seconds': '-1' is negative",
        ),
        (
            "models.csv",
            lambda t: t + "m1,up\n",
            r"models\.csv line 8, column 'model_id': 'm1' repeats line 3",
        ),
        (
            "models.csv",
            lambda t: t.replace("model_id", "name", 1),
            r"models\.csv line 1: required column 'model_id'",
        ),
        ("datasets.csv", lambda t: t + "d99,1\n", r"datasets\.csv line 12: 2 fields, the header has 3"),
        (
            "library.yaml",
            lambda t: t.replace("modality: tabular", "modality: audio"),
            r"library\.yaml, key 'modality'",
        ),
        ("library.yaml", lambda t: "name: [unclosed\n", r"library\.yaml: not valid YAML"),
        (
            "dataset_features/tabular.csv",
            lambda t: _set_cell(t, 2, "log_rows", "inf"),
            r"dataset_features/tabular\.csv line 2, column 'log_rows'",
        ),
    ],
)
def test_bad_bundles_are_refused_naming_file_line_and_column(bundle_dir: Path, file: str, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = bundle_dir / file
    path.write_text(edit(path.read_text()))
    with pytest.raises(InvalidArgument, match=message):
        read_bundle(bundle_dir)


def _set_cell(text: str, line: int, column: str, value: str) -> str:
    lines = text.splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


def test_missing_required_file(bundle_dir: Path) -> None:
    (bundle_dir / "interactions.csv").unlink()
    with pytest.raises(InvalidArgument, match=r"interactions\.csv is missing"):
        read_bundle(bundle_dir)


def test_archives_in_every_format_read_the_same(synth_bundle: Path, tmp_path: Path) -> None:
    expected = canonical(read_bundle(synth_bundle))
    files = bundle_members(read_bundle(synth_bundle))
    # A tar.gz whose members sit in one top folder, as `tar czf lib.tgz lib/` makes it.
    wrapped = tmp_path / "wrapped.tar.gz"
    with tarfile.open(wrapped, "w:gz") as tar:
        tar.add(synth_bundle, arcname="synth")
    assert canonical(read_bundle(wrapped)) == expected
    assert canonical(read_bundle(zip_members(files))) == expected
    assert canonical(read_bundle(pack_members(files))) == expected
    assert canonical(read_bundle(pack_path(synth_bundle))) == expected


def test_packing_is_deterministic(synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    assert pack_bundle(bundle) == pack_bundle(read_bundle(pack_bundle(bundle)))


def test_write_then_read_is_identity(synth_bundle: Path, tmp_path: Path) -> None:
    bundle = read_bundle(synth_bundle)
    out = write_bundle(bundle, tmp_path / "copy")
    assert canonical(read_bundle(out)) == canonical(bundle)
    with pytest.raises(InvalidArgument, match="not empty"):
        write_bundle(bundle, out)


def test_path_traversal_in_an_archive_is_refused() -> None:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("library.yaml", "name: x\n")
        archive.writestr("../../etc/evil.csv", "a\n")
    with pytest.raises(InvalidArgument, match="unsafe path"):
        read_bundle(raw.getvalue())


def test_zip_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import modsnet.data.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "MAX_UNPACKED_BYTES", 1_000_000)
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("models.csv", b"0" * 5_000_000)  # compresses to a few kB
    with pytest.raises(ResourceExhausted, match=r"member 'models\.csv' expands"):  # the ratio refuses it first
        read_bundle(raw.getvalue())
    monkeypatch.setattr(bundle_module, "MAX_EXPANSION", 1 << 40)
    with pytest.raises(ResourceExhausted, match="unpacks to 5,000,000 bytes, more than the limit of 1,000,000"):
        read_bundle(raw.getvalue())


def test_not_an_archive() -> None:
    with pytest.raises(InvalidArgument, match="not a bundle"):
        read_bundle(b"just some text", label="notes.txt")
