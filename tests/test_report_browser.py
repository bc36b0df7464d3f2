"""The HTML report as a person sees it: a real Cora study's report opened in headless Chromium (offline):
no console error, every plot drawn and non-empty, the front table equal to the study's front, the answer
(the front against the baseline) at the top; and the same check failing on a deliberately broken page."""

from __future__ import annotations

import pytest

from autotradeoff.engine.search import search
from autotradeoff.front import gains, pareto
from autotradeoff.front.report import write_report

import browser

pytestmark = pytest.mark.integration

SPACE = """\
task: cora
objectives: {val_accuracy: max, latency_ms: min}
knobs:
  model: {choices: [gcn, gat]}
  hidden: {low: 4, high: 32, log: true}
  heads: {low: 1, high: 4, when: {model: gat}}
  epochs: {low: 5, high: 40}
fidelity: {latency_repeats: 5, latency_warmup: 1}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    if (why := browser.available()) is not None:
        pytest.skip(f"no browser test here: {why} (make test installs chromium and chromium-driver)")
    folder = tmp_path_factory.mktemp("browser")
    (folder / "small.yaml").write_text(SPACE)
    return search("cora", "10trials", space=str(folder / "small.yaml"), study="browser",
                  storage=f"sqlite:///{folder / 'b.db'}", runner="local", seed=0, remeasure=0).study


def test_the_report_renders_in_a_browser_with_the_answer_first(study, tmp_path):
    page = write_report(study, tmp_path / "report")
    seen = browser.inspect_page(page, tmp_path / "report.png")
    assert not browser.problems(seen), browser.problems(seen)
    assert len(seen["plots"]) >= 3 and (tmp_path / "report.png").stat().st_size > 10_000
    rows, objectives = pareto.rows_of(study), pareto.objectives_of(study)
    assert [int(n) for n in seen["tables"]["front"]] == [r["number"] for r in pareto.front(rows, objectives)]
    found = gains.gains(rows, objectives)
    assert [int(n.split()[0]) for n in seen["tables"]["gains"]] == [p["row"]["number"] for p in found["points"]]
    html = page.read_text()
    assert html.index("What the front gains over the baseline") < html.index("plotly")  # the answer comes first
    gcn_rows = [r for r in rows if r["config"]["model"] == "gcn"]
    assert gcn_rows and all("heads" not in r["shown"] for r in gcn_rows)  # inactive knobs hidden


def test_a_broken_page_is_caught(tmp_path):
    if (why := browser.available()) is not None:
        pytest.skip(f"no browser test here: {why}")
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><body><div class='plotly-graph-div'></div>"
                    "<script>notAFunction();</script></body></html>")
    found = browser.problems(browser.inspect_page(page, wait_s=5))
    assert any("console error" in p and "notAFunction" in p for p in found)
    assert any("never became a plot" in p for p in found)
