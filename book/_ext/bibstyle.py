"""Author-year citations for the book, in the text and in the list of references.

Registers two pybtex/sphinxcontrib-bibtex plugins, selected in ``_config.yml``:

- the formatting style ``authoryear``: pybtex's plain style, sorted by author and year, with
  labels "Lee et al., 2022a" (one author: "Mpmath, 2023"; two: "Box and Cox, 1964"), where a
  letter is added when two entries would otherwise share a label;
- the referencing style ``author_year_label``: a citation shows that label in parentheses,
  "(Lee et al., 2022a)", so the text and the list use the same disambiguated labels.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from pybtex.plugin import register_plugin
from sphinxcontrib.bibtex.plugin import register_plugin as register_bibtex_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.label import LabelReferenceStyle


def _last(person) -> str:
    return " ".join(person.prelast_names + person.last_names).replace("{", "").replace("}", "")


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "First et al., YEAR" with a, b ... where two labels would be equal."""

    def _base(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        if len(persons) == 1:
            who = _last(persons[0])
        elif len(persons) == 2:
            who = f"{_last(persons[0])} and {_last(persons[1])}"
        elif persons:
            who = f"{_last(persons[0])} et al."
        else:
            who = entry.fields.get("title", entry.key).split(":")[0]
        return f"{who}, {entry.fields.get('year', 'n.d.')}"

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        bases = [self._base(e) for e in entries]
        counts = Counter(bases)
        seen: dict[str, int] = defaultdict(int)
        for base in bases:
            if counts[base] > 1:
                yield base + "abcdefghijklmnopqrstuvwxyz"[seen[base]]
                seen[base] += 1
            else:
                yield base


class AuthorYearStyle(PlainStyle):
    default_label_style = "author_year_disambiguated"
    default_sorting_style = "author_year_title"


def _round() -> BracketStyle:
    return BracketStyle(left="(", right=")")


@dataclass
class AuthorYearLabelReferenceStyle(LabelReferenceStyle):
    """Citations by the author-year label, in parentheses."""

    bracket_parenthetical: BracketStyle = field(default_factory=_round)
    bracket_textual: BracketStyle = field(default_factory=_round)


register_plugin("pybtex.style.labels", "author_year_disambiguated", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
register_bibtex_plugin("sphinxcontrib.bibtex.style.referencing", "author_year_label", AuthorYearLabelReferenceStyle)


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
