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
- every resource the page loaded came from the local server (no CDN);
- stored outputs a reader wants (:func:`audit_html`, also usable without a browser): no
  progress-bar fragments (tqdm), no stderr boxes, no ``NBVAL`` markers, no paths of the machine
  that built the book (``/root``, ``/work``, ``/home``, ``site-packages``), no result table
  printed as plain text (a ``<pre>`` output whose lines form aligned columns);
- the front page links every chapter of the table of contents;
- at 400 px window width nothing scrolls sideways: neither the page nor any output.

``--counts`` prints the :func:`audit_html` counts over every built page (no browser needed);
``--screenshots DIR`` also saves a screenshot of every page at 1280 and 400 px into ``DIR``.

Exit status 0 when every page passes, 1 otherwise; 2 when Chromium, its driver or selenium
is missing.
"""

from __future__ import annotations

import functools
import html as html_lib
import http.server
import json
import os
import re
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

#: what a tqdm bar leaves in a stored output ("42%|####  | 21/50 [00:03<00:04, 7.1it/s]")
PROGRESS_RE = re.compile(r"\d+%\|[^|\n]{0,60}\||\d+/\d+ \[\d+:\d+|\d+(\.\d+)?(it/s|s/it)\b|IProgress not found|TqdmWarning")
#: paths of the machine that executed the notebooks or built the book
MACHINE_PATH_RE = re.compile(r"(?<![\w.-])/(?:root|work|home)/[^\s'\"]*|[^\s'\"]*site-packages[^\s'\"]*")
_PRE_RE = re.compile(r"<pre[^>]*>(.*?)</pre>", re.S)
_TAG_RE = re.compile(r"<[^>]+>")
_OUTPUT_RE = re.compile(r'<div class="cell_output[^"]*">(.*?)(?=<div class="cell docutils|<section|</section>|</main>|$)', re.S)


def looks_like_table(text: str) -> bool:
    """A plain-text block that is a table: a rule of dashes between columns, or at least three
    lines that split into the same number (>= 3) of columns at runs of two or more spaces."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if any(re.fullmatch(r"\s*-{2,}(\s+-{2,})+\s*", ln) for ln in lines):
        return True
    cols = [len(re.split(r"\s{2,}", ln.strip())) for ln in lines]
    for n in set(cols):
        if n >= 3 and cols.count(n) >= 3:
            return True
    return False


def audit_html(page_html: str, page: str = "") -> dict[str, list[str]]:
    """What a reader should not see on a built page, found in its HTML: category -> excerpts.

    Categories: ``progress`` (tqdm fragments), ``stderr`` (stderr output boxes), ``nbval``
    (``NBVAL`` markers in the text or code), ``paths`` (machine paths in the text),
    ``plain_tables`` (``<pre>`` outputs that are tables).
    """
    main = page_html
    i, j = main.find("<main"), main.rfind("</main>")
    if i >= 0 and j > i:
        main = main[i:j]
    outputs = _OUTPUT_RE.findall(main)
    out_text = [html_lib.unescape(_TAG_RE.sub("", o)) for o in outputs]
    text = html_lib.unescape(_TAG_RE.sub("", main))
    found: dict[str, list[str]] = {"progress": [], "stderr": [], "nbval": [], "paths": [], "plain_tables": []}
    for t in out_text:
        found["progress"] += [ln.strip()[:80] for ln in t.splitlines() if PROGRESS_RE.search(ln)]
    found["stderr"] = ["stderr box"] * main.count('class="output stderr')
    found["nbval"] = [text[max(0, m.start() - 20):m.end() + 20] for m in re.finditer(r"NBVAL_\w+", text)]
    found["paths"] = [text[max(0, m.start() - 30):m.end() + 30].strip() for m in MACHINE_PATH_RE.finditer(text)]
    for o in outputs:
        for pre in _PRE_RE.findall(o):
            t = html_lib.unescape(_TAG_RE.sub("", pre))
            if looks_like_table(t):
                found["plain_tables"].append(t.strip().splitlines()[0][:80])
    return found


def audit_site(html_dir: Path, pages: dict[str, bool] | None = None) -> dict[str, dict[str, list[str]]]:
    """:func:`audit_html` of every page (default :data:`PAGES`) of a built site: page -> findings."""
    pages = PAGES if pages is None else pages
    return {p: audit_html((Path(html_dir) / p).read_text(encoding="utf-8"), p) for p in pages
            if (Path(html_dir) / p).exists()}


def front_page_missing_links(html_dir: Path, pages: dict[str, bool] | None = None) -> list[str]:
    """Chapters of the table of contents that the front page (``index.html``'s target, the toc root)
    does not link to from its main text."""
    pages = list(PAGES if pages is None else pages)
    root = pages[0]
    page_html = (Path(html_dir) / root).read_text(encoding="utf-8")
    i, j = page_html.find('<article'), page_html.rfind('</article>')
    body = page_html[i:j] if i >= 0 < j else page_html
    base = Path(root).parent
    linked = set()
    for href in re.findall(r'href="([^"#]+)(?:#[^"]*)?"', body):
        linked.add(os.path.normpath(str(base / href)))
    return [p for p in pages[1:] if os.path.normpath(p) not in linked]


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


# Runs in the page at a narrow window: what scrolls sideways. The page itself, and any output,
# formula in an output or image (inside the article) whose content is wider than its box.
# Code blocks (cell inputs and shell commands in the text) may scroll: they are not outputs.
# A table with more columns than a phone's width fits (a summary with eight numeric columns) may
# scroll inside the theme's scroll box (.pst-scrollable-table-container), which is what that box
# is for; the box itself must stay inside the page, and a table outside such a box may not scroll.
_OVERFLOW_JS = r"""
const root = document.querySelector('article') || document.querySelector('main') || document.body;
const doc = document.documentElement;
const wide = [];
root.querySelectorAll('.cell_output, .cell_output pre, .cell_output mjx-container[display="true"], table, '
                     + '.pst-scrollable-table-container, img').forEach(e => {
  if (e.closest('.cell_input')) return;   // code cells may scroll; outputs may not
  const inBox = e.matches('.pst-scrollable-table-container') || (e.tagName === 'TABLE'
                && e.parentElement && e.parentElement.matches('.pst-scrollable-table-container'));
  if (inBox) {  // may scroll inside its box; the box may not stick out of the page
    if (e.matches('.pst-scrollable-table-container') && e.getBoundingClientRect().right > doc.clientWidth + 2) {
      wide.push('div.pst-scrollable-table-container sticks out: ' + (e.textContent || '').trim().slice(0, 50));
    }
    return;
  }
  // a few px of slack: MathJax glyphs and table borders overhang their boxes by a pixel or two
  if (e.scrollWidth > e.clientWidth + 6 || e.getBoundingClientRect().right > doc.clientWidth + 2) {
    wide.push(e.tagName.toLowerCase() + '.' + (e.className || '').toString().split(' ')[0] + ' '
              + e.scrollWidth + '>' + e.clientWidth + ': ' + (e.textContent || e.getAttribute('src') || '').trim().slice(0, 50));
  }
});
return JSON.stringify({page: doc.scrollWidth > doc.clientWidth + 2 ? doc.scrollWidth + '>' + doc.clientWidth : '',
                       wide: wide.slice(0, 5), n: wide.length});
"""

#: narrow window width (CSS px) at which nothing may scroll sideways
NARROW = 400


def check_overflow(web, base: str, page: str) -> list[str]:
    """Problems with horizontal scrolling of ``page`` at the current window size."""
    web.get(base + page)
    data = json.loads(web.execute_script(_OVERFLOW_JS))
    out = []
    if data["page"]:
        out.append(f"the page scrolls sideways at {NARROW} px ({data['page']})")
    if data["n"]:
        out.append(f"{data['n']} output(s) scroll sideways at {NARROW} px: {data['wide']}")
    return out


def check_page(web, base: str, page: str, needs_figure: bool) -> PageResult:
    """Load one page and return what is wrong with it (``problems`` empty: it passes)."""
    web.get(base + page)
    data = json.loads(web.execute_async_script(_PROBE_JS))
    res = PageResult(page=page, mjx=data["mjx"], images=len(data["imgs"]))
    # Sphinx marks every formula it emits with class "math"; a page without any (the
    # bibliography) loads no MathJax, and only the raw-TeX check below applies to it
    has_math = 'class="math' in web.page_source
    if has_math and not data["mathjax"]:
        res.problems.append("MathJax did not load")
    if has_math and data["mjx"] == 0:
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
    for kind, hits in audit_html(web.page_source, page).items():
        if hits:
            res.problems.append(f"{len(hits)} {kind.replace('_', ' ')}: {hits[:2]}")
    return res


def screenshot(web, base: str, page: str, width: int, out: Path, max_height: int = 12000) -> Path:
    """Save a screenshot of the whole of ``page`` (up to ``max_height`` px) at ``width`` px."""
    web.set_window_size(width, 900)
    web.get(base + page)
    height = int(web.execute_script("return document.documentElement.scrollHeight"))
    web.set_window_size(width, min(max(height, 900), max_height))
    path = out / f"{page.replace('/', '_').removesuffix('.html')}_{width}.png"
    web.save_screenshot(str(path))
    return path


def check_book(html_dir: Path, pages: dict[str, bool] | None = None,
               screenshots: Path | None = None) -> list[PageResult]:
    """Serve ``html_dir`` and check ``pages`` (default :data:`PAGES`) in headless Chromium;
    with ``screenshots``, also save a screenshot of every page at 1280 and at 400 px there."""
    pages = PAGES if pages is None else pages
    html_dir = Path(html_dir)
    missing = [p for p in pages if not (html_dir / p).exists()]
    if missing:
        raise FileNotFoundError(f"pages not built in {html_dir}: {missing} (run bash scripts/build_book.sh)")
    browser, driver = find_browser()
    if not (browser and driver):
        raise RuntimeError("Chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")
    with serve(html_dir) as base, chromium(browser, driver) as web:
        results = [check_page(web, base, page, fig) for page, fig in pages.items()]
        missing_links = front_page_missing_links(html_dir, pages)
        if missing_links:
            results[0].problems.append(f"the front page does not link these chapters: {missing_links}")
        web.set_window_size(NARROW, 900)
        for r in results:
            r.problems += check_overflow(web, base, r.page)
        if screenshots is not None:
            Path(screenshots).mkdir(parents=True, exist_ok=True)
            for page in pages:
                for width in (1280, NARROW):
                    screenshot(web, base, page, width, Path(screenshots))
        return results


def print_counts(html_dir: Path) -> int:
    """Print the :func:`audit_html` counts of every page and in total; 1 when any is nonzero."""
    totals: dict[str, int] = {}
    for page, found in audit_site(html_dir).items():
        counts = {k: len(v) for k, v in found.items()}
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        print(f"{page}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    missing = front_page_missing_links(html_dir)
    print("total: " + ", ".join(f"{k} {v}" for k, v in totals.items()) + f"; chapters not linked from the front page {len(missing)}")
    return 1 if any(totals.values()) or missing else 0


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--counts":
        return print_counts(Path(argv[2] if len(argv) > 2 else "_build/html"))
    shots = None
    if "--screenshots" in argv:
        i = argv.index("--screenshots")
        shots = Path(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    html_dir = Path(argv[1] if len(argv) > 1 else "_build/html")
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("selenium is not installed (pip install selenium)")
        return 2
    try:
        results = check_book(html_dir, screenshots=shots)
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
