"""Tabular uploads: every refusal names the file and the problem; features are finite, stable and bounded."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modsnet.features.tabular import (
    FEATURE_NAMES,
    FEATURE_SET,
    infer_target,
    read_table,
    stratified_sample,
    tabular_features,
)
from modsnet.runtime.errors import InvalidArgument, ResourceExhausted


def _write(tmp_path: Path, content: bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _refusal(tmp_path: Path, content: bytes, **limits: int) -> str:
    with pytest.raises(InvalidArgument) as caught:
        read_table(_write(tmp_path, content), name="data.csv", **limits)
    message = str(caught.value)
    assert message.startswith("data.csv: ") and "\n" not in message
    return message


# ----------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("content", [b"", b"  \n\n\t\n", b"\xef\xbb\xbf", b'""\n'])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    assert _refusal(tmp_path, content) == "data.csv: the file is empty"


def test_header_without_rows(tmp_path: Path) -> None:
    assert _refusal(tmp_path, b"a,b,c\n\n") == "data.csv: no data rows after the header"


def test_one_column(tmp_path: Path) -> None:
    message = _refusal(tmp_path, b"value\n1\n2\n")
    assert "only one column ('value'); a table needs at least two" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"a,b,c,d\n" + b"1,2,3,4\n" * 15 + b"1,2,3,4,5\n", "row 17 has 5 fields, the header has 4"),
        (b"a,b,c\n1,2,3\n\n\n4,5\n", "row 5 has 2 fields, the header has 3"),  # blank lines still count
        (b"a,b\r\n1,2\r\n3\r\n", "row 3 has 1 field, the header has 2"),
        (b'a,b\n"x, y",2\n"multi\nline",2,3\n', "row 4 has 3 fields, the header has 2"),  # quoted path
    ],
)
def test_ragged_row_names_its_line(tmp_path: Path, content: bytes, expected: str) -> None:
    assert _refusal(tmp_path, content) == f"data.csv: {expected}"


def test_unterminated_quote(tmp_path: Path) -> None:
    assert "line 3: unexpected end of data" in _refusal(tmp_path, b'a,b\n1,"2\n3,4\n')


@pytest.mark.parametrize(
    ("content", "offset"),
    [(b"a,b\n1,\x002\n", 6), (b"\x89PNG\r\n\x1a\n\x00\x00", 6), (b"a,b\n1,2\x07\n", 7)],
)
def test_binary_content(tmp_path: Path, content: bytes, offset: int) -> None:
    assert _refusal(tmp_path, content) == f"data.csv: not a text table (binary content at byte {offset})"


def test_utf16_is_refused_with_a_hint(tmp_path: Path) -> None:
    assert "UTF-16" in _refusal(tmp_path, "a,b\n1,2\n".encode("utf-16"))


def test_no_usable_values(tmp_path: Path) -> None:
    message = _refusal(tmp_path, b"a,b,c\n?,,nan\n,inf,\n")
    assert message == "data.csv: no usable values (every cell is empty, NaN or inf)"


def test_row_and_column_limits(tmp_path: Path) -> None:
    with pytest.raises(ResourceExhausted, match=r"data\.csv: 4 rows, more than the limit of 3"):
        read_table(b"a,b\n1,2\n3,4\n5,6\n7,8\n", name="data.csv", max_rows=3)
    with pytest.raises(ResourceExhausted, match=r"data\.csv: 5 columns, more than the limit of 4"):
        read_table(b"a,b,c,d,e\n1,2,3,4,5\n", name="data.csv", max_columns=4)
    assert read_table(b"a,b\n1,2\n3,4\n5,6\n", name="data.csv", max_rows=3).shape == (3, 2)


# ----------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(delimiter: str) -> None:
    text = (
        delimiter.join(["x", "y", "label"]) + "\n" + delimiter.join(["1.5", "a, b" if delimiter != "," else "ab", "u"])
    )
    df = read_table((text + "\n").encode(), name="t.csv")
    assert list(df.columns) == ["x", "y", "label"]
    assert df.loc[0, "x"] == 1.5


def test_sources_bytes_path_and_stream(tmp_path: Path) -> None:
    content = b"a,b\n1,x\n2,y\n"
    path = _write(tmp_path, content)
    frames = [
        read_table(content, name="d"),
        read_table(path, name="d"),
        read_table(str(path), name="d"),
        read_table(io.BytesIO(content), name="d"),
    ]
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frame, frames[0])


def test_encodings() -> None:
    assert list(read_table(b"\xef\xbb\xbfa,b\n1,2\n", name="d").columns) == ["a", "b"]
    legacy = read_table("name,v\ncafé,1\n€,2\n".encode("cp1252"), name="d")
    assert legacy["name"].tolist() == ["café", "€"]
    assert read_table("name,v\ncafé,1\n".encode(), name="d")["name"].tolist() == ["café"]


def test_cells_are_cleaned() -> None:
    df = read_table(b"a, b, c\n 1.5 , x , inf\n?, y ,2\n3,?,-inf\n", name="d")
    assert df["a"].tolist()[0] == 1.5 and math.isnan(df["a"].tolist()[1])
    assert df["b"].tolist()[:2] == ["x", "y"] and pd.isna(df["b"].tolist()[2])
    assert pd.api.types.is_numeric_dtype(df["c"]) and df["c"].isna().tolist() == [True, False, True]


# ----------------------------------------------------------------------------------------------- target


def test_target_inferred_by_name_then_last_column() -> None:
    frame = pd.DataFrame({"Label ": [0, 1] * 5, "a": range(10), "z": ["u", "v"] * 5})
    assert infer_target(frame, None, name="d") == "Label "
    assert infer_target(frame.drop(columns="Label "), None, name="d") == "z"
    both = pd.DataFrame({"y": [0, 1] * 5, "CLASS": [1, 2] * 5, "a": range(10)})
    assert infer_target(both, None, name="d") == "CLASS"  # class is preferred to y


def test_named_target() -> None:
    frame = pd.DataFrame({"Outcome": [0, 1] * 5, "a": range(10)})
    assert infer_target(frame, "Outcome", name="d") == "Outcome"
    assert infer_target(frame, "outcome", name="d") == "Outcome"
    wide = pd.DataFrame({f"c{i}": [0, 1] * 5 for i in range(12)})
    with pytest.raises(InvalidArgument) as caught:
        infer_target(wide, "missing", name="d.csv")
    columns = ", ".join(f"'c{i}'" for i in range(8))
    assert str(caught.value) == f"d.csv: no column 'missing'; the columns are {columns}, … (12 in all)"


def test_unusable_targets() -> None:
    frame = pd.DataFrame({"a": np.arange(100) / 10, "b": [1] * 100, "c": [None] * 100})
    with pytest.raises(InvalidArgument, match=r"d\.csv: column 'a' has 100 distinct values; .* needs 2-50"):
        infer_target(frame, "a", name="d.csv")
    with pytest.raises(InvalidArgument, match=r"column 'b' has only one class \(1\)"):
        infer_target(frame, "b", name="d.csv")
    with pytest.raises(InvalidArgument, match=r"column 'c' is empty"):
        infer_target(frame, "c", name="d.csv")
    with pytest.raises(InvalidArgument, match=r"because it is the last column; name the target"):
        infer_target(frame[["b", "a"]], None, name="d.csv")


# ----------------------------------------------------------------------------------------------- features


def _mixed_table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 5)), columns=[f"n{i}" for i in range(5)])
    frame["skewed"] = rng.exponential(size=rows)
    frame["n0"] = frame["n0"].mask(rng.random(rows) < 0.1)
    frame["colour"] = pd.Series(rng.choice(["red", "green", "blue"], rows), dtype="str")
    frame["flag"] = rng.random(rows) < 0.3
    frame["constant"] = 7.0
    frame["class"] = np.where(frame["n1"] + rng.normal(scale=0.5, size=rows) > 0.8, "rare", "common")
    return frame


def test_features_are_named_finite_and_sensible() -> None:
    frame = _mixed_table(3_000)
    features = tabular_features(frame, "class")
    assert FEATURE_SET == "tabular/v1"
    assert tuple(features) == FEATURE_NAMES
    assert all(isinstance(v, float) and math.isfinite(v) for v in features.values())
    assert features["log_rows"] == pytest.approx(math.log10(3_000))
    assert features["log_features"] == pytest.approx(math.log10(9))
    assert features["n_classes"] == 2
    assert features["share_categorical"] == pytest.approx(2 / 9)
    assert 0 < features["share_missing"] < 0.02 and 0.05 < features["share_rows_with_missing"] < 0.15
    assert features["minority_share"] + features["majority_share"] == pytest.approx(1)
    assert 0 < features["class_entropy"] < 1
    assert features["mean_abs_skew"] > 0.1  # the exponential column
    assert features["max_mutual_info_share"] > 0.2  # n1 predicts the class
    assert features["landmark_stump"] > 0.6 and features["landmark_naive_bayes"] > 0.6


def test_features_are_deterministic_per_seed() -> None:
    frame = _mixed_table(5_000)
    assert tabular_features(frame, "class", seed=3) == tabular_features(frame.copy(), "class", seed=3)
    assert tabular_features(frame, "class", seed=3) != tabular_features(frame, "class", seed=4)


def test_large_table_matches_its_sample() -> None:
    """Sampling makes a 200k-row table cost like a 50k one, and describe it about as well."""
    frame = _mixed_table(200_000, seed=1)
    full = tabular_features(frame, "class")
    part = tabular_features(frame.sample(50_000, random_state=0), "class")
    for key in FEATURE_NAMES:
        if key in ("log_rows", "log_rows_per_feature"):
            assert full[key] - part[key] == pytest.approx(math.log10(4))
        elif key == "mean_kurtosis":  # a 4th moment of an exponential column: noisy at any sample size
            assert full[key] == pytest.approx(part[key], abs=0.3), key
        else:
            assert full[key] == pytest.approx(part[key], abs=0.05, rel=0.1), key


def test_tiny_or_odd_tables_fall_back_to_chance() -> None:
    tiny = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0], "class": ["x", "y", "x", "y"]})
    features = tabular_features(tiny, "class")
    assert all(math.isfinite(v) for v in features.values())
    assert features["landmark_1nn"] == features["landmark_stump"] == features["landmark_naive_bayes"] == 0.5
    flat = pd.DataFrame({"a": [1.0] * 30, "b": [None] * 30, "class": [0, 1, 2] * 10})
    assert all(math.isfinite(v) for v in tabular_features(flat, "class").values())
    huge = pd.DataFrame({"a": [1e300, -1e300, 5.0, 1e-300] * 10, "class": [0, 1] * 20})
    assert all(math.isfinite(v) for v in tabular_features(huge, "class").values())


def test_stratified_sample_keeps_rare_classes() -> None:
    codes = np.zeros(100_000, dtype=np.intp)
    codes[:7] = 1
    codes[7:9] = -1  # unlabelled rows are never drawn
    rows = stratified_sample(codes, 1_000, seed=0)
    assert np.all(np.diff(rows) > 0) and np.all(codes[rows] >= 0)
    assert (codes[rows] == 1).sum() == 7 and 1_000 <= len(rows) <= 1_007
    assert np.array_equal(rows, stratified_sample(codes, 1_000, seed=0))


def test_a_stray_control_byte_in_a_large_text_is_kept_and_many_are_binary(tmp_path: Path) -> None:
    """Real exports carry a stray control byte now and then (HHS's breach reports: 0x19 for an apostrophe): one in
    a thousand bytes is still text, kept as read; more, or any NUL, is binary, refused naming the first."""
    from modsnet.data.text_decoding import CONTROL_SHARE, decode_text

    rows = b"".join(b"Clinic number %d,Healthcare Provider\n" % i for i in range(200))
    stray = b"name,type\nCincinnati Children\x19s Hospital,Healthcare Provider\n" + rows
    assert len(stray) > CONTROL_SHARE and "Children\x19s" in decode_text(stray, "t.csv")
    path = tmp_path / "breaches.csv"
    path.write_bytes(stray)
    assert read_table(path, name="breaches.csv").iloc[0]["name"] == "Cincinnati Children\x19s Hospital"
    crowded = stray[:40] + b"\x19" * (len(stray) // CONTROL_SHARE) + stray[40:]
    with pytest.raises(InvalidArgument, match=r"^t.csv: not a text table \(binary content at byte 29\)$"):
        decode_text(crowded, "t.csv", what="a text table")
    with pytest.raises(InvalidArgument, match=r"binary content at byte 3\)$"):
        decode_text(b"abc\x00" + rows, "t.csv")
