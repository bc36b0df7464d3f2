"""A real browser for the report tests: headless Chromium (Debian's chromium and chromium-driver) driven by
Selenium, offline. ``inspect_page`` opens an HTML file and returns what a person would see go wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

PLOTS = """return Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
  traces: gd.data ? gd.data.length : 0,
  points: gd.data ? gd.data.reduce((n, t) => n + ((t.x || t.y || t.dimensions || []).length), 0) : 0,
  drawn: gd.querySelectorAll('svg.main-svg').length,
  width: gd.getBoundingClientRect().width,
  title: (gd.layout && gd.layout.title && (gd.layout.title.text || gd.layout.title)) || ''}));"""


def available() -> str | None:
    """Why no browser test can run here (None when Chromium, its driver and Selenium are installed)."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    return f"missing {', '.join(missing)}" if missing else None


def inspect_page(page: Path, screenshot: Path | None = None, *, wait_s: float = 30.0) -> dict:
    """Open ``page`` in headless Chromium; return its console errors, every plot (traces, points, whether its
    SVG was drawn), the rows of the tables by id, and write a screenshot of the top of the page."""
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(page.resolve().as_uri())
        expected = driver.execute_script("return document.querySelectorAll('.js-plotly-plot, .plotly-graph-div').length")
        WebDriverWait(driver, wait_s).until(lambda d: all(p["drawn"] for p in d.execute_script(PLOTS))
                                            or d.execute_script("return document.readyState") == "complete" and
                                            len(d.execute_script(PLOTS)) < expected)
        plots = driver.execute_script(PLOTS)
        tables = driver.execute_script("return Object.fromEntries(Array.from(document.querySelectorAll('table[id]'))"
                                       ".map(t => [t.id, Array.from(t.rows).slice(1).map(r => r.cells[0].innerText)]))")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        return {"errors": errors, "plots": plots, "expected_plots": expected, "tables": tables}
    finally:
        driver.quit()


def problems(seen: dict) -> list[str]:
    """What is wrong with an inspected page: console errors, plots not drawn or drawn empty."""
    found = [f"console error: {e}" for e in seen["errors"]]
    if len(seen["plots"]) < seen["expected_plots"]:
        found.append(f"{seen['expected_plots'] - len(seen['plots'])} plot container(s) never became a plot")
    found += [f"empty plot {p['title']!r}" for p in seen["plots"] if not p["drawn"] or not p["traces"] or not p["points"]]
    return found
