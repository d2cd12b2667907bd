"""Summary tables of a text or image zoo bundle with transfer models (docs/benchmarks.md, benchmarks-transfer.md).

    python benchmarks/zoo_transfer.py modsnet/libraries/textzoo

Prints: per encoder, the plain models' and the transfer models' pairs, mean balanced accuracy, median fit
and inference seconds; which encoder gives each task's best model; and how the transfer models did against
their encoder's plain `logreg-c1` (gain = transfer score minus that score on the same task), split by the
target's relation to the trunk's source (own source: trunk trained inside each CV fold; same source group;
other groups), and on how many tasks a transfer model is the best (ties included) or the only best.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def _table(rows: list[dict[str, object]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    args = parser.parse_args()
    models = pd.read_csv(args.bundle / "models.csv", keep_default_na=False).set_index("model_id")
    datasets = pd.read_csv(args.bundle / "datasets.csv", keep_default_na=False).set_index("dataset_id")
    pairs = pd.read_csv(args.bundle / "interactions.csv")
    pairs["encoder"] = pairs["model_id"].map(models["encoder"])
    pairs["transfer"] = pairs["model_id"].map(models.get("trunk", pd.Series("", index=models.index))) != ""
    print(
        f"{len(models)} models ({int(pairs.drop_duplicates('model_id')['transfer'].sum())} transfer) x "
        f"{len(datasets)} tasks = {len(pairs)} pairs; status: {pairs['status'].value_counts().to_dict()}"
    )

    rows = []
    for (encoder, transfer), part in pairs.groupby(["encoder", "transfer"]):
        rows.append(
            {
                "encoder": encoder + (" (transfer)" if transfer else ""),
                "models": part["model_id"].nunique(),
                "tasks": part["dataset_id"].nunique(),
                "pairs": len(part),
                "mean balanced accuracy": f"{part['score'].mean():.3f}",
                "median fit s": f"{part['train_seconds'].median():.2g}",
                "median inference s": f"{part['inference_seconds'].median():.3g}",
                "median memory MB": f"{part['memory_bytes'].median() / 1e6:.3g}",
            }
        )
    print(_table(rows))

    best = pairs.loc[pairs.sort_values("model_id").groupby("dataset_id")["score"].idxmax()]
    print("\nbest model's encoder (first by model id among ties):", best["encoder"].value_counts().to_dict())
    plain = pairs[~pairs["transfer"]]
    best_plain = plain.loc[plain.sort_values("model_id").groupby("dataset_id")["score"].idxmax()]
    print("best plain model's encoder (as before the transfer models):", best_plain["encoder"].value_counts().to_dict())

    transfer = pairs[pairs["transfer"]].copy()
    if transfer.empty:
        return
    baseline = plain[plain["model_id"].str.endswith("--logreg-c1")].set_index(["encoder", "dataset_id"])["score"]
    transfer["logreg_c1"] = [baseline[(e, d)] for e, d in zip(transfer["encoder"], transfer["dataset_id"], strict=True)]
    transfer["gain"] = transfer["score"] - transfer["logreg_c1"]
    source = transfer["model_id"].map(models["trunk_source_dataset"])
    group = datasets["source_group"]
    transfer["relation"] = [
        "own source (trunk trained in each fold)"
        if s == d
        else ("same source group" if group[s] == group[d] else "other groups")
        for s, d in zip(source, transfer["dataset_id"], strict=True)
    ]
    rows = []
    for (encoder, relation), part in transfer.groupby(["encoder", "relation"]):
        rows.append(
            {
                "encoder": encoder,
                "target vs trunk's source": relation,
                "pairs": len(part),
                "mean transfer score": f"{part['score'].mean():.3f}",
                "mean `logreg-c1`": f"{part['logreg_c1'].mean():.3f}",
                "mean gain": f"{part['gain'].mean():+.3f}",
                "share with gain > 0": f"{(part['gain'] > 0).mean():.2f}",
            }
        )
    print()
    print(_table(rows))
    top = pairs.groupby("dataset_id")["score"].max()
    best_transfer = transfer.groupby("dataset_id")["score"].max()
    best_plain_score = plain.groupby("dataset_id")["score"].max()
    tied_or_best = sorted(d for d in top.index if best_transfer[d] >= top[d])
    only_best = sorted(d for d in top.index if best_transfer[d] > best_plain_score[d])
    print(f"\na transfer model is a task's best (ties included) on {len(tied_or_best)} of {len(top)}: {tied_or_best}")
    print(f"the only best on {len(only_best)}:")
    for dataset_id in only_best:
        row = transfer[transfer["dataset_id"] == dataset_id].sort_values("score").iloc[-1]
        print(f"  {dataset_id}: {row['model_id']} {row['score']:.3f} (best plain {best_plain_score[dataset_id]:.3f})")
    print(
        f"mean over tasks: best transfer model {best_transfer.mean():.3f}, "
        f"best plain model {best_plain_score.mean():.3f}"
    )
    by_model = transfer.groupby("model_id")["gain"].mean().sort_values()
    print(
        f"mean gain by transfer model: lowest {by_model.index[0]} {by_model.iloc[0]:+.3f}, "
        f"highest {by_model.index[-1]} {by_model.iloc[-1]:+.3f}"
    )


if __name__ == "__main__":
    main()
