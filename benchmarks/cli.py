"""Wall time of CLI commands as a user runs them: a fresh `python -m modsnet` process each time.

    .venv/bin/python benchmarks/cli.py [--home DIR] [--runs 5] [--baseline-root ../main] [--out FILE]

On one data folder (a temp one by default: the built-in libraries are imported and TabZoo's GNN trained
by an untimed first search), the median (p50) of `--runs` runs of:
- `modsnet --help`;
- `modsnet library list` and `modsnet search examples/saheart.csv` (TabZoo, 5 probes), each in-process
  (`--no-daemon`: the command starts the four services itself and loads the estimator's checkpoint) and
  through a warm daemon (started, and its estimator loaded by one untimed search, beforehand);
- with `--baseline-root`, the same in-process commands run with another checkout's code (run in its folder) on the
  same folder in the same run: the before/after ratio.
Writes a markdown page and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/saheart.csv"
TARGET_SECONDS = 1.5


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _daemon_cpu(home: Path) -> float:
    """CPU seconds the daemon of `home` has used so far (Linux /proc; 0 where there is none)."""
    try:
        pid = json.loads((home / "daemon.json").read_text())["pid"]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, KeyError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(args: list[str], env: dict[str, str], runs: int, cwd: Path = ROOT) -> tuple[float, list[float], float]:
    """p50 and every wall time of `runs` runs of `python -m modsnet ARGS` (each must exit 0), and the CPU
    seconds per run of the command's process plus the daemon's (a figure a busy machine distorts less)."""
    times = []
    home = Path(env["MODSNET_HOME"])
    cpu = _children_cpu() + _daemon_cpu(home)
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "modsnet", *args], env=env, cwd=cwd, capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"modsnet {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    cpu = (_children_cpu() + _daemon_cpu(home) - cpu) / runs
    return statistics.median(times), times, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="data folder to use (default: a new temp folder)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-root", type=Path, help="another checkout whose code runs the 'before' column")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-cli.md")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        home = (args.home or Path(tmp) / "home").resolve()
        base = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_")}
        env = {**base, "MODSNET_HOME": str(home), "PYTHONPATH": str(ROOT)}
        plain = {**env, "MODSNET_DAEMON": "0"}
        print(f"warming {home}: built-in libraries and TabZoo's GNN (untimed)", file=sys.stderr)
        timed(["search", EXAMPLE], plain, 1)
        rows: list[tuple[str, str, float, list[float], float]] = []
        rows.append(("`modsnet --help`", "-", *timed(["--help"], env, args.runs)))
        for label, command in (
            ("`library list`", ["library", "list"]),
            ("warm `search saheart.csv`", ["search", EXAMPLE]),
        ):
            rows.append((label, "in-process (`--no-daemon`)", *timed(command, plain, args.runs)))
            if args.baseline_root:
                before = {**plain, "PYTHONPATH": str(args.baseline_root.resolve())}
                older = timed(command, before, args.runs, cwd=args.baseline_root.resolve())
                rows.append((label, f"in-process, code of {args.baseline_root}", *older))
        timed(["daemon", "start"], env, 1)
        try:
            timed(["search", EXAMPLE], env, 1)  # the daemon loads TabZoo's estimator: untimed
            rows.append(("`library list`", "daemon", *timed(["library", "list"], env, args.runs)))
            rows.append(("warm `search saheart.csv`", "daemon", *timed(["search", EXAMPLE], env, args.runs)))
        finally:
            timed(["daemon", "stop"], env, 1)
        if args.baseline_root:
            before = {**base, "MODSNET_HOME": str(home), "PYTHONPATH": str(args.baseline_root.resolve())}
            older = timed(["--help"], before, args.runs, cwd=args.baseline_root.resolve())
            rows.insert(1, ("`modsnet --help`", f"code of {args.baseline_root}", *older))

    command = "python benchmarks/cli.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# CLI wall times",
        "",
        f"`{command.strip()}` ({dt.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end). A fresh process per run, p50 of {args.runs}; "
        f"target for a warm search: <= {TARGET_SECONDS} s.",
        "",
        "| command | how | p50 wall (s) | runs (s) | CPU s per run (command + daemon) |",
        "|---|---|---:|---|---:|",
    ]
    for label, how, p50, times, cpu in rows:
        runs = ", ".join(f"{t:.2f}" for t in times)
        lines.append(f"| {label} | {how} | {p50:.2f} | {runs} | {cpu:.2f} |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
