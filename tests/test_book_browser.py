"""The built book, opened in headless Chromium, shows rendered math and its figures.

Skips (with the reason) when the book has not been built (``bash scripts/build_book.sh``),
or when Chromium, chromedriver or selenium is missing. The checks themselves live in
``scripts/check_book_browser.py``, which the README documents for manual use.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"

spec = importlib.util.spec_from_file_location("check_book_browser", ROOT / "scripts" / "check_book_browser.py")
browser_check = importlib.util.module_from_spec(spec)
sys.modules["check_book_browser"] = browser_check
spec.loader.exec_module(browser_check)


def _skip_reason() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install selenium)"
    chromium, driver = browser_check.find_browser()
    if not (chromium and driver):
        return "Chromium/chromedriver not found (apt-get install -y chromium chromium-driver)"
    missing = [p for p in browser_check.PAGES if not (HTML / p).exists()]
    if missing:
        return f"book not built ({missing[0]} missing): run bash scripts/build_book.sh"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


@pytest.fixture(scope="module")
def results() -> dict:
    return {r.page: r for r in browser_check.check_book(HTML)}


@pytest.mark.parametrize("page", list(browser_check.PAGES))
def test_page_renders_math_and_figures(results: dict, page: str) -> None:
    r = results[page]
    # check_page already requires typeset math on every page whose HTML contains formulas
    assert not r.problems, f"{page}: " + "; ".join(r.problems)
    if browser_check.PAGES[page]:
        assert r.images > 0
