"""What the fuzz tests share: case counts per profile, the property they check, near-valid inputs.

`make test` runs every fuzz target with a few cases (the "ci" profile, derandomized so a run is
reproducible); `make fuzz` sets HYPOTHESIS_PROFILE=fuzz for 10,000 random cases per target. Inputs are
random bytes and mutations of real valid files (`mutated`): flipped, inserted and deleted bytes, cuts,
duplicated spans (headers, rows), numbers replaced by NaN/inf/huge values, BOMs and odd encodings, deep
nesting, an empty file.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from modsnet.runtime.errors import ModsnetError

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ_CASES = int(os.environ.get("FUZZ_CASES", "10000"))
# A case that runs this long is a hang, not a slow parse: the limit is far above any real case's time on a
# quiet machine. FUZZ_HANG_SECONDS raises it for a long run on a machine other work keeps busy, where an
# embedding case waiting for a core passes 20 s without hanging.
HANG_SECONDS = float(os.environ.get("FUZZ_HANG_SECONDS", "20"))

# What a parser may refuse with: bad input, over a limit, an id that is not there.
PARSER_CODES = frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "NOT_FOUND"})

# function_scoped_fixture: an RPC target's cluster is meant to live through all of its cases.
_SUPPRESS = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
    HealthCheck.function_scoped_fixture,
]
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("fuzz", database=None, print_blob=True)


def fuzz_settings(ci_cases: int, *, hang_seconds: float = HANG_SECONDS) -> settings:
    """`ci_cases` cases in `make test`, FUZZ_CASES under `make fuzz`; a case past `hang_seconds` fails."""
    cases = FUZZ_CASES if PROFILE == "fuzz" else ci_cases
    return settings(
        settings.get_profile("fuzz" if PROFILE == "fuzz" else "ci"),
        max_examples=cases,
        deadline=hang_seconds * 1000,
        suppress_health_check=_SUPPRESS,
    )


def refused_or_parsed(call: Callable[[], Any], codes: frozenset[str] = PARSER_CODES) -> Any:
    """Run a parser: it returns, or raises a domain error of one of `codes` with a one-line message.

    Anything else (a KeyError, a numpy error, a domain error that says INTERNAL) propagates and fails the case.
    """
    try:
        return call()
    except ModsnetError as exc:
        assert exc.code in codes, f"{type(exc).__name__} ({exc.code}): {exc.message}"
        assert exc.message.strip() and "\n" not in exc.message, repr(exc.message)
        return None


# ----------------------------------------------------------------------------------------------- mutations

_NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][-+]?\d+)?")
ODD_NUMBERS = (
    b"nan",
    b"NaN",
    b"inf",
    b"-inf",
    b"Infinity",
    b"1e308",
    b"-1e308",
    b"1e999",
    b"5e-324",
    b"-0",
    b"99999999999999999999999",
    b"",
    b"0x1F",
    b"1,5",
)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def _flip(data: bytes, at: int, mask: int) -> bytes:
    if not data:
        return data
    at %= len(data)
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]


def _odd_number(data: bytes, which: int, value: bytes) -> bytes:
    matches = list(_NUMBER.finditer(data[:200_000]))
    if not matches:
        return data
    match = matches[which % len(matches)]
    return data[: match.start()] + value + data[match.end() :]


def _duplicate_line(data: bytes, which: int, times: int) -> bytes:
    lines = data.split(b"\n")
    line = lines[which % len(lines)]
    return b"\n".join([*lines[: which % len(lines)], *([line] * times), *lines[which % len(lines) :]])


def _reencode(data: bytes, encoding: str) -> bytes:
    try:
        return data.decode("utf-8").encode(encoding, errors="replace")
    except UnicodeDecodeError:
        return data


def _nest(data: bytes, at: int, depth: int, opener: bytes, closer: bytes) -> bytes:
    at = at % (len(data) + 1)
    return data[:at] + opener * depth + closer * depth + data[at:]


def _mutation(size: int) -> st.SearchStrategy[Callable[[bytes], bytes]]:
    position = st.integers(0, max(size, 1))
    return st.one_of(
        st.builds(lambda at, mask: lambda d: _flip(d, at, mask), position, st.integers(1, 255)),
        st.builds(lambda at: lambda d: d[:at], position),
        st.builds(lambda at, n: lambda d: d[:at] + d[at + n :], position, st.integers(1, 64)),
        st.builds(lambda at, extra: lambda d: d[:at] + extra + d[at:], position, st.binary(min_size=1, max_size=32)),
        st.builds(
            lambda at, n, times: lambda d: d[:at] + d[at : at + n] * times + d[at:],
            position,
            st.integers(1, 256),
            st.integers(1, 50),
        ),
        st.builds(
            lambda which, value: lambda d: _odd_number(d, which, value),
            st.integers(0, 10_000),
            st.sampled_from(ODD_NUMBERS),
        ),
        st.builds(
            lambda which, times: lambda d: _duplicate_line(d, which, times), st.integers(0, 1000), st.integers(1, 3)
        ),
        st.builds(lambda bom: lambda d: bom + d, st.sampled_from(_BOMS)),
        st.builds(lambda enc: lambda d: _reencode(d, enc), st.sampled_from(["utf-16", "latin-1", "cp1252", "utf-32"])),
        st.builds(
            lambda at, depth, pair: lambda d: _nest(d, at, depth, *pair),
            position,
            st.integers(50, 5000),
            st.sampled_from([(b"<a>", b"</a>"), (b"[", b"]"), (b'{"a":', b"}"), (b'"', b'"')]),
        ),
        st.just(lambda d: b""),
        st.just(lambda d: d.replace(b"\n", b"\r")),
        st.just(lambda d: d.replace(b",", b"\t")),
    )


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], *, random_share: bool = True) -> bytes:
    """A seed with 0-4 mutations, or (sometimes) random bytes of about its size."""
    seed = draw(st.sampled_from(seeds))
    if random_share and draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=min(len(seed), 4096)))
    for mutate in draw(st.lists(_mutation(len(seed)), max_size=4)):
        seed = mutate(seed)
    return seed


def zip_bytes(members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------- valid seeds


def _pattern(points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A powder pattern: two peaks on a background, with counting noise."""
    x = np.linspace(10.0, 80.0, points)
    peaks = 1000 * np.exp(-(((x - 40) / 0.3) ** 2)) + 400 * np.exp(-(((x - 62) / 0.4) ** 2))
    y = 100 + peaks + np.random.default_rng(0).poisson(20, points)
    return x, y


def xy_seed() -> bytes:
    x, y = _pattern()
    header = "# wavelength = 1.5406 Angstrom\n# 2theta intensity\n"
    return (header + "".join(f"{a:.4f} {b:.1f}\n" for a, b in zip(x, y, strict=True))).encode()


def xrdml_seed() -> bytes:
    _, y = _pattern()
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5">
 <xrdMeasurement measurementType="Scan"><usedWavelength><kAlpha1 unit="Angstrom">1.5406</kAlpha1></usedWavelength>
 <incidentBeamPath><xRayTube><anodeMaterial>Cu</anodeMaterial></xRayTube></incidentBeamPath>
 <scan mode="Continuous" scanAxis="Gonio"><dataPoints>
  <positions axis="2Theta" unit="deg"><startPosition>10</startPosition><endPosition>80</endPosition></positions>
  <positions axis="Omega" unit="deg"><startPosition>5</startPosition><endPosition>40</endPosition></positions>
  <commonCountingTime unit="seconds">1.0</commonCountingTime>
  <intensities unit="counts">{" ".join(str(int(v)) for v in y)}</intensities>
 </dataPoints></scan></xrdMeasurement>
</xrdMeasurements>
""".encode()


def raw_seed() -> bytes:
    """A Bruker RAW v4 scan at the fixed offsets fairmat-readers-xrd reads (points, step, start, data)."""
    x, y = _pattern()
    raw = bytearray(0x51F + 8 * len(y))
    raw[:7] = b"RAW4.00"
    struct.pack_into("<H", raw, 0x1C3, len(y))
    struct.pack_into("<d", raw, 0x20F, float(x[1] - x[0]))
    struct.pack_into("<d", raw, 0x4FB, float(x[0]))
    raw[0x4D0:0x4D6] = b"2Theta"
    raw[0x1A8:0x1AA] = b"Cu"
    for i, value in enumerate(y):
        struct.pack_into("<ff", raw, 0x51F + 8 * i, float(value), 0.0)
    return bytes(raw)


def rasx_members() -> dict[str, bytes]:
    """The two members of a Rigaku .rasx scan: the profile (after a 3-byte BOM) and its conditions."""
    x, y = _pattern()
    profile = b"\xef\xbb\xbf" + "".join(f"{a:.4f}\t{b:.1f}\t1.0\n" for a, b in zip(x, y, strict=True)).encode()
    conditions = b"""<?xml version="1.0" encoding="utf-8"?>
<MeasurementConditions>
 <ScanInformation><AxisName>TwoThetaTheta</AxisName><Mode>Continuous</Mode><PositionUnit>deg</PositionUnit>
  <SpeedUnit>deg/min</SpeedUnit><Step>0.35</Step><Speed>10</Speed></ScanInformation>
 <HWConfigurations>
  <Categories><Category Name="Detector" SelectedUnit="D/teX"/></Categories>
  <Optics><Optic>none</Optic></Optics>
  <Distances><Distance To="Sample" From="Source" Unit="mm" Value="300"/></Distances>
  <XrayGenerator><TargetName>Cu</TargetName><Voltage>40</Voltage><Current>30</Current>
   <WavelengthKalpha1>1.540593</WavelengthKalpha1></XrayGenerator>
 </HWConfigurations>
 <RASHeader><Pair><Key>MEAS_COND_AXIS_NAME-0</Key><Value>TwoThetaTheta</Value></Pair></RASHeader>
 <Axes><Axis Name="TwoThetaTheta" Unit="deg" Offset="0" Position="10"/></Axes>
</MeasurementConditions>
"""
    return {"Data0/Profile0.txt": profile, "Data0/MesurementConditions0.xml": conditions}


def brml_members() -> dict[str, bytes]:
    """The two members of a Bruker .brml scan: the data container and one raw data file."""
    x, y = _pattern()
    container = b"""<?xml version="1.0" encoding="utf-8"?>
<DataContainer><RawDataReferenceList><string>Experiment0/RawData0.xml</string></RawDataReferenceList></DataContainer>"""
    datums = "".join(f"<Datum>1,1,{a:.4f},{a / 2:.4f},{b:.0f}</Datum>" for a, b in zip(x, y, strict=True))
    raw = f"""<?xml version="1.0" encoding="utf-8"?>
<RawData xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <DataRoutes><DataRoute>
  <ScanInformation ScanName="TwoTheta-Scan"><MeasurementPoints>{len(x)}</MeasurementPoints><TimePerStep>1</TimePerStep>
   <TimePerStepEffective>1</TimePerStepEffective><ScanMode>Continuous</ScanMode>
   <ScanAxes><ScanAxisInfo AxisName="TwoTheta"><Unit Base="deg"/><Reference>0</Reference>
    <Start>10</Start><Stop>80</Stop><Increment>0.35</Increment></ScanAxisInfo></ScanAxes>
  </ScanInformation>
  <DataViews><RawDataView xsi:type="FixedRawDataView" Start="4" Length="1" LogicName="Counter1D"/></DataViews>
  {datums}
 </DataRoute></DataRoutes>
 <FixedInformation><Drives><InfoData LogicName="Theta"><Position Value="5" Unit="deg"/></InfoData></Drives>
  <Instrument><PrimaryTracks><TrackInfoData><MountedOptics><InfoData xsi:type="SlitMountInfoData"/>
   <InfoData xsi:type="TubeMountInfoData"><Tube><TubeMaterial>Cu</TubeMaterial>
    <WaveLengthAlpha1 Value="1.5406" Unit="angstrom"/></Tube></InfoData></MountedOptics></TrackInfoData></PrimaryTracks>
  </Instrument>
 </FixedInformation>
</RawData>""".encode()
    return {"Experiment0/DataContainer.xml": container, "Experiment0/RawData0.xml": raw}
