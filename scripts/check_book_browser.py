"""Open the built book in headless Chromium and check that math and figures render.

Usage (after ``bash scripts/build_book.sh``)::

    python scripts/check_book_browser.py [_build/html]

Needs Chromium and its driver (Debian: ``apt-get install -y chromium chromium-driver``) and
the ``selenium`` package (PyPI). The built site is served on 127.0.0.1 by a local
``http.server``; nothing else is contacted. For every checked page it waits until MathJax
has typeset the page, then requires:

- MathJax output present (``mjx-container`` elements) where the page has math;
- no raw TeX left in the text outside code blocks (``$$``, ``\\(``, ``\\[``, ``\\frac{`` ...);
- every ``<img>`` loaded (``complete`` and ``naturalWidth > 0``), and at least one figure on
  each notebook page;
- every resource the page loaded came from the local server (no CDN).

Exit status 0 when every page passes, 1 otherwise; 2 when Chromium, its driver or selenium
is missing.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socketserver
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

def _pages_from_toc(toc: Path = Path(__file__).resolve().parents[1] / "_toc.yml") -> dict[str, bool]:
    """Every page of the table of contents -> whether it must show a figure (the notebooks do)."""
    import yaml

    data = yaml.safe_load(toc.read_text())
    files = [data["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("chapters"))
            walk(e.get("sections"))

    for part in data.get("parts", []):
        walk(part.get("chapters"))
    walk(data.get("chapters"))
    return {f"{f}.html": f.startswith("notebooks/") for f in files}


#: pages to check, relative to the site root, and whether each must show a figure
PAGES: dict[str, bool] = _pages_from_toc()

#: TeX that MathJax should have consumed; seen in the page text it means math did not render
RAW_TEX = [r"$$", r"\(", r"\)", r"\[", r"\]", r"\frac{", r"\begin{", r"\alpha", r"\mathcal{",
           r"\tag{", r"\displaystyle", r"\left(", r"\sigma"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_NAMES = ("chromedriver",)

# Runs in the page: wait for MathJax's startup promise (typesetting done), then report.
_PROBE_JS = r"""
const done = arguments[arguments.length - 1];
function report() {
  const root = document.querySelector('main') || document.body;
  const clone = root.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, .highlight, textarea')
       .forEach(e => e.remove());
  const imgs = Array.from(root.querySelectorAll('img')).map(i => ({
      src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth}));
  const resources = performance.getEntriesByType('resource').map(r => r.name);
  done(JSON.stringify({
    mathjax: typeof window.MathJax === 'object' && !!window.MathJax.startup,
    mjx: root.querySelectorAll('mjx-container').length,
    mjx_errors: root.querySelectorAll('mjx-merror').length,
    text: clone.textContent,
    imgs: imgs,
    resources: resources,
  }));
}
function wait(tries) {
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    window.MathJax.startup.promise.then(report, report);
  } else if (tries > 0) {
    setTimeout(() => wait(tries - 1), 100);
  } else { report(); }
}
if (document.readyState === 'complete') { wait(100); }
else { window.addEventListener('load', () => wait(100)); }
"""


@dataclass
class PageResult:
    """What the browser saw on one page."""

    page: str
    mjx: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)


def find_browser() -> tuple[str | None, str | None]:
    """Paths of a Chromium binary and of chromedriver, or None where missing."""
    browser = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = os.environ.get("CHROMEDRIVER") or next(
        (p for p in map(shutil.which, DRIVER_NAMES) if p), None)
    return browser, driver


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of the base class
        pass


@contextmanager
def serve(html_dir: Path) -> Iterator[str]:
    """Serve ``html_dir`` on 127.0.0.1 (a free port) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}/"
        finally:
            httpd.shutdown()


@contextmanager
def chromium(browser: str, driver: str) -> Iterator[object]:
    """A headless Chromium driven by selenium, with a fresh profile and no background traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ashbook-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                "--window-size=1280,1024"):
        opts.add_argument(arg)
    web = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    web.set_script_timeout(60)
    web.set_page_load_timeout(60)
    try:
        yield web
    finally:
        web.quit()
        shutil.rmtree(profile, ignore_errors=True)


def check_page(web, base: str, page: str, needs_figure: bool) -> PageResult:
    """Load one page and return what is wrong with it (``problems`` empty: it passes)."""
    web.get(base + page)
    data = json.loads(web.execute_async_script(_PROBE_JS))
    res = PageResult(page=page, mjx=data["mjx"], images=len(data["imgs"]))
    if not data["mathjax"]:
        res.problems.append("MathJax did not load")
    if data["mjx"] == 0:
        res.problems.append("no MathJax output (mjx-container) on the page")
    if data["mjx_errors"]:
        res.problems.append(f"{data['mjx_errors']} MathJax error(s) (mjx-merror)")
    raw = [tex for tex in RAW_TEX if tex in data["text"]]
    if raw:
        i = data["text"].find(raw[0])
        res.problems.append(f"raw TeX left in the text: {raw} near {data['text'][max(0, i - 60):i + 60]!r}")
    broken = [im["src"] for im in data["imgs"] if not (im["complete"] and im["width"] > 0)]
    if broken:
        res.problems.append(f"images not loaded: {broken}")
    if needs_figure and not data["imgs"]:
        res.problems.append("no figure (<img>) on a notebook page")
    foreign = [r for r in data["resources"] if not r.startswith(base)]
    if foreign:
        res.problems.append(f"resources from other hosts: {foreign[:5]}")
    return res


def check_book(html_dir: Path, pages: dict[str, bool] | None = None) -> list[PageResult]:
    """Serve ``html_dir`` and check ``pages`` (default :data:`PAGES`) in headless Chromium."""
    pages = PAGES if pages is None else pages
    html_dir = Path(html_dir)
    missing = [p for p in pages if not (html_dir / p).exists()]
    if missing:
        raise FileNotFoundError(f"pages not built in {html_dir}: {missing} (run bash scripts/build_book.sh)")
    browser, driver = find_browser()
    if not (browser and driver):
        raise RuntimeError("Chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")
    with serve(html_dir) as base, chromium(browser, driver) as web:
        return [check_page(web, base, page, fig) for page, fig in pages.items()]


def main(argv: list[str]) -> int:
    html_dir = Path(argv[1] if len(argv) > 1 else "_build/html")
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("selenium is not installed (pip install selenium)")
        return 2
    try:
        results = check_book(html_dir)
    except FileNotFoundError as err:
        print(err)
        return 1
    except RuntimeError as err:
        print(err)
        return 2
    failed = 0
    for r in results:
        status = "ok" if not r.problems else "FAIL"
        print(f"{status:4} {r.page}: {r.mjx} math elements, {r.images} images")
        for p in r.problems:
            print(f"     - {p}")
        failed += bool(r.problems)
    print(f"browser check {'passed' if not failed else 'FAILED'}: {len(results) - failed}/{len(results)} pages")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
