"""The web app in a real headless Chromium (Debian's `chromium`, driven by Playwright): real uploads through the
page, results read from the DOM, every chart checked for its marks, feedback, keyboard-only search, axe-core,
a narrow window. Screenshots go to docs/screenshots/ for the README."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from synthetic import make_table

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MODSNET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# `make screenshots` refreshes the README's (docs/screenshots); otherwise they go to a temp folder.
SHOTS = Path(os.environ.get("MODSNET_SCREENSHOTS") or tempfile.mkdtemp(prefix="modsnet-screenshots-"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make setup` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda e: errors.append(str(e)))
    yield opened
    context.close()
    assert not errors, errors  # no uncaught script error on any page


def _csv(tmp_path: Path, name: str = "mine.csv", seed: int = 11) -> Path:
    path = tmp_path / name
    make_table(150, 4, 2, seed).to_csv(path, index=False)
    return path


def _axe(page: Any) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def _rendered(page: Any, chart: str, marks: str) -> int:
    """How many `marks` (CSS selector inside the chart) the chart drew, after it said it rendered."""
    page.wait_for_selector(f"#{chart}[data-rendered='true']", timeout=20_000)
    return page.locator(f"#{chart} {marks}").count()


def _search(page: Any, web_url: str, csv: Path) -> None:
    page.goto(f"{web_url}/#/search")
    page.set_input_files("#file-input", str(csv))
    page.select_option("#library", "synth")
    page.fill("#k", "5")
    page.click("#go")
    page.wait_for_selector("#results table tbody tr", timeout=60_000)


def test_search_a_csv_then_charts_and_feedback(page: Any, web_url: str, tmp_path: Path) -> None:
    _search(page, web_url, _csv(tmp_path))
    rows = page.locator("#results table tbody tr")
    assert rows.count() == 5
    first = rows.nth(0).locator("td")
    assert first.nth(0).inner_text() == "1" and first.nth(1).inner_text().startswith("m")
    assert "±" in first.nth(2).inner_text()
    assert rows.nth(0).locator("svg.interval circle").count() == 1  # the uncertainty bar
    assert "predicted" in first.nth(4).inner_text()  # no probe ran on this library: nothing claims "measured"
    assert "no artifact" in first.nth(9).inner_text()  # synthetic models have nothing to download
    assert page.locator("#answer-summary").inner_text().startswith("tabular, 150 rows")
    assert _rendered(page, "scores-chart", ".scatterlayer .point") >= 5
    assert _rendered(page, "tradeoff-chart", ".scatterlayer .point") >= 5
    assert page.locator("#tradeoff-chart .scatterlayer .js-line").count() >= 1  # the front
    assert page.evaluate("window.modsnet.lastRender") is not None
    page.screenshot(path=str(SHOTS / "search.png"), full_page=True)

    before = int(page.inner_text("#graph-version"))
    page.fill("#feedback-score", "0.83")
    page.click("#feedback-form button[type=submit]")
    page.wait_for_selector("#new-graph-version", timeout=20_000)
    assert int(page.inner_text("#new-graph-version")) == before + 1
    assert int(page.inner_text("#graph-version")) == before + 1

    violations = _axe(page)
    assert not violations, json.dumps(violations, indent=1)


def test_keyboard_only_search(page: Any, web_url: str, tmp_path: Path) -> None:
    page.goto(f"{web_url}/#/search")
    page.wait_for_selector("#file-input", state="attached")
    # The file itself comes from the OS dialog, which a test cannot drive: the picker must be reachable by Tab,
    # then the file is set as that dialog would.
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id"))
        if "file-input" in reached:
            break
    assert "file-input" in reached
    page.set_input_files("#file-input", str(_csv(tmp_path, seed=12)))
    page.keyboard.press("Tab")  # on to the folder picker
    page.keyboard.press("Tab")  # the library
    assert page.evaluate("document.activeElement.id") == "library"
    for _ in range(6):  # arrow keys through the libraries to "synth"
        page.keyboard.press("ArrowDown")
        if page.input_value("#library") == "synth":
            break
    assert page.input_value("#library") == "synth"
    passed = set()
    for _ in range(20):
        passed.add(page.evaluate("document.activeElement.id"))
        if "go" in passed:
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "go"
    assert {"objective", "profile", "tradeoff-cost"} <= passed  # the pareto cost is off until pareto is picked
    page.keyboard.press("Enter")
    page.wait_for_selector("#results table tbody tr", timeout=60_000)
    assert page.locator("#results table tbody tr").count() == 6  # k = 10: all 6 models


def test_folder_of_images_and_a_text_csv(page: Any, web_url: str, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "shapes"
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), colour).save(folder / label / f"{i}.png")
    page.goto(f"{web_url}/#/search")
    page.set_input_files("#folder-input", str(folder))
    assert "Folder shapes: 6 files" in page.inner_text("#chosen")
    page.click("#go")
    page.wait_for_selector("#results table tbody tr", timeout=60_000)
    assert "images" in page.inner_text("#results h2")
    assert page.inner_text("#answer-summary").startswith("image, 6 rows/items")
    assert page.locator("#results table tbody tr").count() == 4

    texts = tmp_path / "reviews.csv"
    pairs = [("great", "pos"), ("dull", "neg")] * 10
    texts.write_text(
        "review,label\n" + "".join(f'"a {w} film, {w} acting, a {w} plot",{label}\n' for w, label in pairs)
    )
    page.set_input_files("#file-input", str(texts))
    page.click("#go")
    page.wait_for_function("document.querySelector('#results h2')?.innerText.includes('reviews.csv')", timeout=60_000)
    assert "texts" in page.inner_text("#results h2")
    assert page.inner_text("#answer-summary").startswith("text, 20 rows/items")

    # The edge profile (inference <= 10 ms) keeps text-m0 alone; ranked by score per inference second.
    page.select_option("#profile", "edge")
    page.select_option("#objective", "per-inference-seconds")
    assert page.is_disabled("#pareto-cost")
    page.click("#go")
    page.wait_for_selector("#removals li", timeout=60_000)
    heads = page.locator("#results table thead th").all_inner_texts()
    assert "score per inference s" in heads
    rows = page.locator("#results table tbody tr")
    value = rows.nth(0).locator("td").nth(heads.index("score per inference s")).inner_text()
    assert rows.count() == 1 and float(value) > 0
    (removal,) = page.locator("#removals li").all_inner_texts()
    assert removal.startswith("The edge profile's limit on inference time (≤ 10 ms) left out 3 models (text-m"), removal
    assert "predicted to beat the top pick" in removal, removal
    assert "Hardware profile edge: inference ≤ 10 ms, memory ≤ 50 MB" in page.inner_text("#objective-summary")
    violations = _axe(page)
    assert not violations, json.dumps(violations, indent=1)

    # Pareto against memory, no profile: the table marks the front and the chart draws the server's front.
    page.select_option("#profile", "")
    page.select_option("#objective", "pareto")
    page.select_option("#pareto-cost", "memory")
    page.click("#go")
    page.wait_for_selector("#results table thead th:has-text('Pareto front')", timeout=60_000)
    assert page.locator("#results table tbody tr").count() == 4 and page.locator("#removals").count() == 0
    assert "null" not in page.inner_text("#results")
    assert page.input_value("#tradeoff-cost") == "memory_bytes"
    marked = page.locator("#results .badge.front").count()
    assert marked >= 1 and page.locator("#results table tbody tr").nth(0).locator(".badge.front").count() == 1
    _rendered(page, "tradeoff-chart", ".scatterlayer .point")
    front_points = page.evaluate(
        "document.getElementById('tradeoff-chart').data.find((t) => t.name === 'Pareto front').x.length"
    )
    assert front_points == marked
    page.screenshot(path=str(SHOTS / "search-objective.png"), full_page=True)


def test_library_model_and_dataset_pages(page: Any, web_url: str) -> None:
    page.goto(f"{web_url}/#/library/synth")
    page.wait_for_selector(".cards")
    assert page.locator(".card .n").first.inner_text() == "6"
    assert _rendered(page, "matrix-chart", ".hm, .heatmaplayer image, .heatmaplayer path") >= 1
    page.screenshot(path=str(SHOTS / "library.png"))
    assert not _axe(page)

    page.click("table a[href$='/model/m0']")
    assert _rendered(page, "model-chart", ".bars .point") == 10
    page.screenshot(path=str(SHOTS / "model.png"))

    page.goto(f"{web_url}/#/library/synth/dataset/d0")
    assert _rendered(page, "dataset-chart", ".bars .point") == 6
    nearest = page.locator("table").nth(1).locator("tbody tr")
    why = [nearest.nth(i).inner_text() for i in range(nearest.count())]
    assert len(why) == 8 and all("closest in dataset features" in w for w in why)
    assert any("correlation" in w for w in why)  # the library's own datasets share all 6 models with d0
    page.screenshot(path=str(SHOTS / "dataset.png"))


def test_xrd_view(page: Any, web_url: str, xrd_scan: Path) -> None:
    page.goto(f"{web_url}/#/xrd")
    page.wait_for_selector("#xrd-finder option", state="attached")
    page.set_input_files("#xrd-file", str(xrd_scan))
    page.click("#xrd-form button[type=submit]")
    assert _rendered(page, "xrd-chart-0", ".scatterlayer .js-line") >= 1
    assert page.locator("#xrd-chart-0 .scatterlayer .point").count() >= 1  # the peaks
    page.screenshot(path=str(SHOTS / "xrd.png"))
    assert not _axe(page)

    finder = page.input_value("#xrd-finder")
    page.goto(f"{web_url}/#/library/xrdzoo/model/{finder}")
    with page.expect_download() as download:
        page.click("text=Download artifact")
    saved = download.value.path()
    assert download.value.suggested_filename == f"{finder}.json" and json.loads(Path(saved).read_text())["kind"]


def test_narrow_window(browser: Any, web_url: str, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 380, "height": 800})
    page = context.new_page()
    _search(page, web_url, _csv(tmp_path, seed=13))
    # Nothing but the results table's own scroller is wider than the window.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, overflow
    page.screenshot(path=str(SHOTS / "search-narrow.png"))
    context.close()


def test_evaluation_view(page: Any, web_url: str, web_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from modsnet import cli

    for service in ("query", "knowledge", "storage", "recommender"):
        monkeypatch.setenv(f"MODSNET_{service.upper()}_ADDR", web_cluster.addresses[service])
    # The baselines and the kNN estimator only: the GNN's leave-one-out fits take minutes (docs/benchmarks.md).
    methods = ["--methods", "popularity", "knn", "random", "--targets", "d0", "d3", "d6", "--budgets", "0", "1", "3"]
    assert cli.main(["eval", "synth", *methods]) == 0
    page.goto(f"{web_url}/#/eval/synth")
    assert _rendered(page, "eval-mean-chart", ".bars .point") == 9  # 3 methods x 3 correlations
    assert _rendered(page, "eval-target-chart", ".bars .point") >= 6
    assert _rendered(page, "eval-calibration-chart", ".bars .point") == 2  # the kNN estimator has intervals
    # Predicted against actual on the first target: the 6 models, by the one estimator evaluated (kNN).
    assert _rendered(page, "eval-scatter-chart", ".scatterlayer .point") == 6
    page.select_option("#eval-target", "d3")
    page.wait_for_function(
        "document.querySelector('#eval-scatter-chart .gtitle, #eval-scatter-chart .xtitle').textContent.includes('d3')"
    )
    # No decision table without the ModsNet method (its regret is what the table compares): no chart for it either.
    assert page.locator("#eval-decisions-chart").count() == 0
    assert "null" not in page.inner_text("#eval-body")
    rows = page.locator("table tbody tr")
    assert sorted(rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())) == [
        "knn",
        "popularity",
        "random",
    ]
    page.screenshot(path=str(SHOTS / "evaluation.png"), full_page=True)
