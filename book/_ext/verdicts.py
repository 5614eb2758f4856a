"""Verdict words in the book's prose pages, read from the committed ledger ``results/verdicts.json``.

The intro and the errata must not type a verdict by hand: each page would drift from the
notebooks whenever a run is repeated. This extension gives them two ways to say a verdict:

- the role ``{verdict}`ASH-A7``` renders the claim's verdict word (``refuted``), and
  ``{verdict}`ASH-A7 full``` the word with its qualification;
- the directive ``verdict-table`` renders a table of claims with their verdicts, chosen by
  ``:claims: ASH-A7, ASH-EQ5`` or by ``:words: not reproduced, mixed`` (every claim whose
  verdict word is one of these), with ``:evidence:`` to add the evidence column.

The ledger is written by ``python -m ashlib verdicts --update`` and by the notebooks
(see ``ashlib.experiments.verdicts``); an unknown claim ID, or a ledger that lacks one, is a
build error, never a blank.
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective, SphinxRole

from ashlib.experiments.verdicts import VERDICT_WORDS, read_ledger

def _ledger(env) -> dict:
    """claim -> ashlib Verdict, read once per build from ``results/verdicts.json`` of the book's source."""
    cache = getattr(env, "_ashlib_ledger", None)
    if cache is None:
        try:
            cache = read_ledger(Path(env.srcdir) / "results")
        except (FileNotFoundError, ValueError) as exc:
            raise ExtensionError(str(exc)) from None
        env._ashlib_ledger = cache
    return cache


def _entry(env, claim: str, where: str):
    ledger = _ledger(env)
    if claim not in ledger:
        raise ExtensionError(f"{where}: claim {claim!r} is not in results/verdicts.json")
    env.note_dependency(str(Path(env.srcdir) / "results" / "verdicts.json"))
    return ledger[claim]


class VerdictRole(SphinxRole):
    """``{verdict}`CLAIM``` -> its verdict word; ``{verdict}`CLAIM full``` -> word and qualification."""

    def run(self):
        parts = self.text.split()
        claim, full = parts[0], len(parts) > 1 and parts[1] == "full"
        entry = _entry(self.env, claim, f"{self.env.docname}:{self.lineno}")
        text = entry.verdict if full else entry.word
        return [nodes.emphasis(text, text, classes=["verdict"])], []


class VerdictTable(SphinxDirective):
    """A table of claims and their ledger verdicts (see the module docstring)."""

    option_spec = {"claims": directives.unchanged, "words": directives.unchanged, "evidence": directives.flag}

    def run(self):
        ledger = _ledger(self.env)
        where = f"{self.env.docname}:{self.lineno}"
        if "claims" in self.options:
            claims = [c.strip() for c in self.options["claims"].split(",") if c.strip()]
        elif "words" in self.options:
            words = [w.strip() for w in self.options["words"].split(",") if w.strip()]
            bad = [w for w in words if w not in VERDICT_WORDS]
            if bad:
                raise ExtensionError(f"{where}: unknown verdict words {bad}")
            claims = [c for c, v in ledger.items() if v.word in words]
        else:
            raise ExtensionError(f"{where}: verdict-table needs :claims: or :words:")
        entries = [_entry(self.env, c, where) for c in claims]
        cols = ["claim", "verdict"] + (["evidence"] if "evidence" in self.options else [])
        table = nodes.table(classes=["verdict-table"])
        group = nodes.tgroup(cols=len(cols))
        table += group
        for width in ([14, 38, 48] if len(cols) == 3 else [18, 82]):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        row = nodes.row()
        for c in cols:
            row += nodes.entry("", nodes.paragraph(text=c))
        head += row
        body = nodes.tbody()
        group += body
        for e in entries:
            row = nodes.row()
            for c in cols:
                cell = nodes.entry()
                value = getattr(e, c)
                if c == "claim":
                    cell += nodes.paragraph("", "", nodes.literal(value, value))
                else:
                    cell += nodes.paragraph(text=value)
                row += cell
            body += row
        if not entries:
            return [nodes.paragraph(text="(no claim has this verdict)")]
        return [table]


def setup(app):
    app.add_role("verdict", VerdictRole())
    app.add_directive("verdict-table", VerdictTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
