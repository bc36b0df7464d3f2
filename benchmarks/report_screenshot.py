"""A screenshot of a study's report as headless Chromium renders it (the top of the page: the answer table
and the first front plot), for the README: after `make demo`,

    python benchmarks/report_screenshot.py --study cora      # writes reports/benchmarks/report_cora.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from autotradeoff.front.report import write_report  # noqa: E402
from autotradeoff.study import default_storage, load_study, open_storage  # noqa: E402

import browser  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="cora")
    parser.add_argument("--storage")
    args = parser.parse_args()
    study = load_study(open_storage(args.storage or default_storage(args.study), must_exist=args.storage is None), args.study)
    with tempfile.TemporaryDirectory() as tmp:
        page = write_report(study, Path(tmp))
        seen = browser.inspect_page(page, ROOT / "reports" / "benchmarks" / f"report_{args.study}.png")
    print(f"plots drawn: {len(seen['plots'])}; problems: {browser.problems(seen) or 'none'}")


if __name__ == "__main__":
    main()
