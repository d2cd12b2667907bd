"""How fast the web app shows things, in headless Chromium on loopback (not a test: figures for docs/).

Starts the embedded default with the built-in libraries (tabzoo, xrdzoo) and the HTTP port, then per page:
first contentful paint (the browser's own `paint` entry) over `--runs` fresh page loads, and for a search of
examples/saheart.csv the time from the API's answer to the results table in the DOM (`window.modsnet.lastRender`,
measured by the page) and to both charts drawn.

    python benchmarks/web.py --runs 5 --out docs/benchmarks-web.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modsnet.embedded import EmbeddedCluster  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
PAGES = ["#/search", "#/libraries", "#/library/tabzoo", "#/xrd"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-web.md")
    parser.add_argument("--chromium", default=os.environ.get("MODSNET_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as home, EmbeddedCluster(home, estimator="knn", http_port=0) as cluster:
        url = f"http://{cluster.addresses['http']}/"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            for page_hash in PAGES:
                paints = []
                for _ in range(args.runs):
                    context = browser.new_context()
                    page = context.new_page()
                    page.goto(url + page_hash)
                    page.wait_for_load_state("load")
                    fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
                    paints.append(float(fcp))
                    context.close()
                rows.append((f"first paint {page_hash}", paints))
            renders, charts, answers = [], [], []
            for _ in range(args.runs):
                page = browser.new_context().new_page()  # a fresh page: no earlier answer on screen
                page.goto(url + "#/search")
                page.set_input_files("#file-input", str(ROOT / "examples" / "saheart.csv"))
                page.select_option("#library", "tabzoo")
                page.fill("#probe-budget", "0")  # the page, not the probes, is measured here
                started = time.perf_counter()
                page.click("#go")
                page.wait_for_selector("#results table tbody tr", timeout=120_000)
                answers.append((time.perf_counter() - started) * 1000)
                renders.append(float(page.evaluate("window.modsnet.lastRender")))
                t0 = time.perf_counter()
                page.wait_for_selector("#tradeoff-chart[data-rendered='true']", timeout=30_000)
                page.wait_for_selector("#scores-chart[data-rendered='true']", timeout=30_000)
                charts.append(renders[-1] + (time.perf_counter() - t0) * 1000)
                page.context.close()
            rows += [
                ("search: click to table (upload, search, render)", answers),
                ("search: API answer to results table in the DOM", renders),
                ("search: API answer to both charts drawn (about)", charts),
            ]
            browser.close()
    lines = [
        "# Web app speed",
        "",
        f"`python benchmarks/web.py --runs {args.runs}` (headless Debian chromium, loopback, embedded default with",
        "tabzoo and xrdzoo, kNN estimator, probe budget 0; 2 shared cores). Milliseconds over the runs.",
        "",
        "| what | median ms | min ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for name, values in rows:
        lines.append(f"| {name} | {statistics.median(values):.0f} | {min(values):.0f} | {max(values):.0f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
