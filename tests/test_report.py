"""The report of a real (tiny) sweep: ranking, figures, and a page that loads in Chromium."""

import shutil

import pytest

from initlab.report import build_report, ranking_table, summarize
from initlab.report.summary import is_stalled
from initlab.sweep import SweepSpec, run_sweep
from initlab.sweep.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = "<script>alert('x')</script>&<b>"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    spec = SweepSpec(name=HOSTILE, dataset="synthetic", inits=["he_normal", "zeros"],
                     activations=["relu", "tanh"], depths=[2], widths=[16], steps=40,
                     batch_size=64, eval_every=20, seeds=[0, 1])
    with Store(tmp_path_factory.mktemp("store") / "runs.db") as db:
        return db.results(run_sweep(spec, db, progress=False))


def test_summaries_average_seeds_and_rank(results):
    summaries = summarize(results)
    assert len(summaries) == 4 and all(s.runs == 2 for s in summaries)
    accuracies = [s.test_accuracy for s in summaries]
    assert accuracies == sorted(accuracies, reverse=True)
    he_relu = next(s for s in summaries if (s.init, s.activation) == ("he_normal", "relu"))
    expected = sum(r.evals[-1]["test_acc"] for r in results
                   if (r.config.init, r.config.activation) == ("he_normal", "relu")) / 2
    assert he_relu.test_accuracy == pytest.approx(expected)


def test_zero_init_relu_is_flagged_stalled(results):
    # All-zero weights with ReLU: every hidden unit outputs relu(0) = 0, so only the output
    # bias learns and the loss stays near log(classes): the stall rule must see that.
    zero_relu = [r for r in results if (r.config.init, r.config.activation) == ("zeros", "relu")]
    he_relu = [r for r in results if (r.config.init, r.config.activation) == ("he_normal", "relu")]
    assert all(is_stalled(r) for r in zero_relu)
    assert not any(is_stalled(r) for r in he_relu)


def test_ranking_table_has_a_row_per_config(results):
    table = ranking_table(summarize(results))
    assert table.row_count == 4


def test_html_escapes_every_given_string(results, tmp_path):
    path = build_report(results, tmp_path / "r.html", HOSTILE, findings=[HOSTILE], meta=HOSTILE)
    page = path.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("data:image/png;base64,") >= 3  # heatmap, loss curves, layer profiles


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run "
                                             "installs it)")
def test_report_loads_in_headless_chromium(results, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    path = build_report(results, tmp_path / "report.html", HOSTILE, findings=[HOSTILE])
    problems = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: problems.append(f"dialog: {d.message}") or d.dismiss())
        page.goto(path.as_uri())
        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        title = page.title()
        rows = page.eval_on_selector_all("tbody tr", "rows => rows.length")
        browser.close()
    assert problems == []
    assert len(images) >= 3 and all(done and w > 100 and h > 100 for done, w, h in images)
    assert title == HOSTILE and rows == 4
