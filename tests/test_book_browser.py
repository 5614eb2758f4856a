"""The built book: rendered math and figures in headless Chromium, and stored outputs a reader wants.

The browser tests skip (with the reason) when the book has not been built
(``bash scripts/build_book.sh``), or when Chromium, chromedriver or selenium is missing; the
static audit of the built HTML needs only the build. The checks themselves live in
``scripts/check_book_browser.py``, which the maintainers' page documents for manual use.
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


def _not_built() -> str | None:
    missing = [p for p in browser_check.PAGES if not (HTML / p).exists()]
    if missing:
        return f"book not built ({missing[0]} missing): run bash scripts/build_book.sh"
    return None


def _skip_reason() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install selenium)"
    chromium, driver = browser_check.find_browser()
    if not (chromium and driver):
        return "Chromium/chromedriver not found (apt-get install -y chromium chromium-driver)"
    return _not_built()


needs_build = pytest.mark.skipif(_not_built() is not None, reason=str(_not_built()))
needs_browser = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


# ----------------------------------------------------------------- the audit itself, on made-up pages

def _page(output_html: str) -> str:
    return f'<html><body><main><div class="cell_output docutils container">{output_html}</div></main></body></html>'


def test_audit_finds_what_a_reader_should_not_see() -> None:
    bar = '<div class="output stderr"><pre>fit:  40%|####      | 2/5 [00:01&lt;00:02,  1.5it/s]</pre></div>'
    path = '<div class="output stream"><pre>/home/me/.venv/lib/python3.11/site-packages/x.py:1: Warn</pre></div>'
    text_table = '<div class="output stream"><pre>act   acc   loss\n----  ----  ----\nrelu  91.0  0.30\nash   92.0  0.28</pre></div>'
    found = browser_check.audit_html(_page(bar + path + text_table) + "# NBVAL_CHECK_OUTPUT")
    assert len(found["progress"]) == 1 and len(found["stderr"]) == 1
    assert found["paths"] and found["plain_tables"]


def test_audit_passes_clean_outputs() -> None:
    clean = ('<div class="output stream"><pre>profile: quick\nseeds 0 and 1</pre></div>'
             '<table class="table"><tr><td>relu</td><td>91.0</td></tr></table>')
    assert not any(browser_check.audit_html(_page(clean)).values())


# ----------------------------------------------------------------- the built book, without a browser

@needs_build
@pytest.mark.parametrize("page", list(browser_check.PAGES))
def test_stored_outputs_are_clean(page: str) -> None:
    found = browser_check.audit_html((HTML / page).read_text(encoding="utf-8"), page)
    assert not any(found.values()), {k: v[:3] for k, v in found.items() if v}


@needs_build
def test_front_page_links_every_chapter() -> None:
    assert browser_check.front_page_missing_links(HTML) == []


# ----------------------------------------------------------------- the built book in Chromium

@pytest.fixture(scope="module")
def results() -> dict:
    return {r.page: r for r in browser_check.check_book(HTML)}


@needs_browser
@pytest.mark.parametrize("page", list(browser_check.PAGES))
def test_page_renders_math_and_figures(results: dict, page: str) -> None:
    r = results[page]
    # check_page requires typeset math where the HTML has formulas, loaded figures, clean
    # outputs, and nothing that scrolls sideways at 400 px
    assert not r.problems, f"{page}: " + "; ".join(r.problems)
    if browser_check.PAGES[page]:
        assert r.images > 0
