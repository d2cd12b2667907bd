"""What the probing policy's likeness, chosen per library at fit time, is chosen on: its held-out datasets' regrets.

    .venv/bin/python benchmarks/likeness_choice.py [LIBRARY...] [--likeness 0 3 10] [--shared-data ../shared/data]

LIBRARY: `oboe` (imported from --shared-data into a temp folder; skipped with a message where that is absent),
`tabzoo`, `xrdzoo` or a bundle folder (default: the three). Each is fitted as a search serves it (`fit_blend`
with the GNN: calibration fits, the served fit); `likeness.choose_likeness` is then replayed on the same
pseudo-targets for each likeness, and the table gives the mean regret (library metric) at B = 3 / 5 / 10
measurements in all: with the likeness for the policy's first `policy.CHOSEN_PROBES` probes and `policy.LIKENESS`
after (as served), and with it for every probe. The choice is made on B = 3 and 5 (`likeness.BUDGETS`); the
served fit's choice and its paired gain over the default are printed under each table
(docs/benchmarks-decisions.md, "A likeness per library"). Not a test; prints markdown.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from blend import bundle_path

from modsnet.data.bundle import read_bundle
from modsnet.data.probe_scale import ProbeScale
from services.recommender import likeness, policy
from services.recommender.estimators import blend
from services.recommender.evaluation import graph_from_bundle

ROOT = Path(__file__).resolve().parents[1]
SHOWN = (3, 5, 10)


def table(name: str, shared: Path, choices: list[float]) -> list[str]:
    from services.recommender.estimators.gnn import GnnEstimator  # torch is imported only when this runs

    with tempfile.TemporaryDirectory() as tmp:
        snapshot, probes = graph_from_bundle(read_bundle(bundle_path(name, shared, Path(tmp))))
    kept: list[Any] = []
    served_choice = likeness.choose_likeness

    def keep(queries: Any, **kwargs: Any) -> likeness.LikenessChoice:
        kept.extend(queries)
        kept.append(kwargs)
        return served_choice(queries, **kwargs)

    blend.choose_likeness = keep  # type: ignore[assignment]
    start = time.perf_counter()
    try:
        served = blend.fit_blend(snapshot, lambda graph: GnnEstimator(graph, probes=probes))
    finally:
        blend.choose_likeness = served_choice  # type: ignore[assignment]
    seconds = time.perf_counter() - start
    settings, queries = kept[-1], kept[:-1]
    noise = policy.probe_noise(settings.get("scale") or ProbeScale.of_library(snapshot.library.meta))
    usable = [q for q in queries if len(q.model_ids) >= max(likeness.MIN_MODELS, max(SHOWN))]
    lines = [
        f"\n{name}: {len(usable)} held-out datasets of >= {max(SHOWN)} models (fit {seconds:.0f} s)\n",
        "| likeness | " + " | ".join(f"B = {b}, first {policy.CHOSEN_PROBES} probes" for b in SHOWN)
        + " | " + " | ".join(f"B = {b}, every probe" for b in SHOWN) + " |",
        "|---|" + "---:|" * (2 * len(SHOWN)),
    ]  # fmt: skip
    schedule = policy.CHOSEN_PROBES
    for k in choices:
        cells = []
        for first in (schedule, 10**6):
            policy.CHOSEN_PROBES = first
            try:
                regrets = [likeness.replay_regrets(q, k, budgets=SHOWN, noise=noise) for q in usable]
            finally:
                policy.CHOSEN_PROBES = schedule
            cells += [f"{np.mean([r[b] for r in regrets]):.4f}" for b in SHOWN]
        lines.append(f"| {k:g} | " + " | ".join(cells) + " |")
    chosen = served.blend
    lines.append(
        f"\nserved: likeness {chosen.likeness if chosen.likeness is not None else policy.LIKENESS:g}"
        + (f" (mean regret at B = 3 and 5 by candidate: {chosen.likeness_regrets})" if chosen.likeness_regrets else
           " (the default: no choice made)")
    )  # fmt: skip
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("libraries", nargs="*", default=["tabzoo", "xrdzoo", "oboe"])
    parser.add_argument("--likeness", type=float, nargs="+", default=[0.0, 1.0, 3.0, 10.0, 30.0])
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    for name in args.libraries:
        if name == "oboe" and not (args.shared_data / "oboe").is_dir():
            print(f"\noboe skipped: no OBOE records under {args.shared_data} (see ../shared/data/README.md)")
            continue
        print("\n".join(table(name, args.shared_data, args.likeness)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
