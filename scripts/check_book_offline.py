"""Check that a built Jupyter Book loads nothing from another host.

Usage: python scripts/check_book_offline.py [_build/html]

Fails (exit 1) when any HTML page references a script, stylesheet, font or image by an
absolute http(s) URL, or when MathJax is missing from ``_static/mathjax``. Plain hyperlinks
(``<a href=...>``) are allowed: they are not fetched when the page is shown.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

#: attributes through which a browser fetches a resource when it renders the page
FETCHED = {("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src"),
           ("source", "src"), ("video", "src"), ("audio", "src"), ("embed", "src")}
EXTERNAL = re.compile(r"^(https?:)?//", re.IGNORECASE)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (tag, name) in FETCHED and EXTERNAL.match(value):
                # <link rel="canonical"> and similar are not fetched; stylesheets/preloads are
                rel = dict(attrs).get("rel") or ""
                if tag == "link" and not re.search(r"stylesheet|preload|icon|modulepreload", rel):
                    continue
                self.external.append(f"<{tag} {name}={value!r}>")


def external_resources(html_dir: Path) -> dict[str, list[str]]:
    """Map each page (relative path) to the external resources it would fetch."""
    found: dict[str, list[str]] = {}
    for page in sorted(html_dir.rglob("*.html")):
        parser = _Collector()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        if parser.external:
            found[str(page.relative_to(html_dir))] = parser.external
    return found


def main(argv: list[str]) -> int:
    html_dir = Path(argv[1] if len(argv) > 1 else "_build/html")
    if not (html_dir / "index.html").exists():
        raise FileNotFoundError(f"{html_dir}/index.html not found: build the book first "
                                "(bash scripts/build_book.sh)")
    problems = 0
    mathjax = html_dir / "_static" / "mathjax" / "tex-chtml.js"
    if not mathjax.exists():
        print(f"missing {mathjax}: MathJax would not load offline")
        problems += 1
    for page, refs in external_resources(html_dir).items():
        problems += 1
        print(f"{page}: {', '.join(refs[:5])}")
    if problems:
        print(f"offline check FAILED ({problems} problem(s))")
        return 1
    print(f"offline check passed: {len(list(html_dir.rglob('*.html')))} pages, "
          "no external scripts or stylesheets, MathJax served locally")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
