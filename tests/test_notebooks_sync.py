"""Every notebook is a MyST source (notebooks/NN_name.md) paired with its executed .ipynb.

These tests fail when
- a .md (or a .ipynb) in notebooks/ has no partner,
- a .md and its .ipynb disagree in the code of any cell (or in the number and kind of cells),
- a .ipynb has no stored outputs, or has code cells that were never executed,
- a .md lacks the jupytext pairing header (``formats: ipynb,md:myst``, kernel python3).

They are generic over every notebooks/*.md, so notebooks added later are covered too. The
checking functions are tested on small hand-made pairs as well, so that a broken checker
cannot pass silently.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.md"))
EXECUTED = sorted(NOTEBOOKS.glob("*.ipynb"))


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(cell type, source) of every cell, sources stripped of trailing whitespace."""
    return [(c.cell_type, c.source.rstrip()) for c in nb.cells]


def sync_problems(md_path: Path, ipynb_path: Path) -> list[str]:
    """Return the ways in which a MyST source and its .ipynb disagree (empty: in sync)."""
    if not ipynb_path.exists():
        return [f"{md_path.name}: paired notebook {ipynb_path.name} is missing"]
    md = jupytext.read(md_path)
    nb = nbformat.read(ipynb_path, as_version=4)
    problems = []
    a, b = _cells(md), _cells(nb)
    if [t for t, _ in a] != [t for t, _ in b]:
        problems.append(
            f"{md_path.name} has cells {[t[0] for t, _ in a]} but {ipynb_path.name} has "
            f"{[t[0] for t, _ in b]} (c = code, m = markdown, r = raw): re-run jupytext"
        )
        return problems
    for i, ((kind, src_md), (_, src_nb)) in enumerate(zip(a, b)):
        if kind == "code" and src_md != src_nb:
            problems.append(
                f"cell {i}: the code in {md_path.name} differs from {ipynb_path.name}:\n"
                f"--- md ---\n{src_md[:400]}\n--- ipynb ---\n{src_nb[:400]}"
            )
        elif kind != "code" and " ".join(src_md.split()) != " ".join(src_nb.split()):
            problems.append(f"cell {i}: the {kind} text differs between {md_path.name} "
                            f"and {ipynb_path.name}")
    return problems


def output_problems(ipynb_path: Path) -> list[str]:
    """Return the reasons a .ipynb does not hold a complete executed run (empty: fine)."""
    nb = nbformat.read(ipynb_path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    if not code:
        return [f"{ipynb_path.name} has no code cells"]
    problems = []
    if not any(c.get("outputs") for c in code):
        problems.append(f"{ipynb_path.name} has no stored outputs: execute it with jupytext --execute")
    never_run = [i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and c.source.strip() and c.get("execution_count") is None]
    if never_run:
        problems.append(f"{ipynb_path.name}: code cells {never_run} were never executed")
    errors = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        problems.append(f"{ipynb_path.name}: cells {sorted(set(errors))} stored an error")
    counts = [c.execution_count for c in code if c.get("execution_count") is not None]
    if counts != sorted(counts):
        problems.append(f"{ipynb_path.name}: cells were executed out of order {counts}")
    return problems


def header_problems(md_path: Path) -> list[str]:
    """Return what is missing from a MyST source's jupytext header (empty: fine)."""
    md = jupytext.read(md_path)
    meta = md.metadata
    problems = []
    formats = meta.get("jupytext", {}).get("formats", "")
    if "ipynb" not in formats or "md:myst" not in formats:
        problems.append(f"{md_path.name}: jupytext formats is {formats!r}, expected 'ipynb,md:myst'")
    if meta.get("kernelspec", {}).get("name") != "python3":
        problems.append(f"{md_path.name}: kernelspec name must be python3")
    return problems


# ---------------------------------------------------------------- the real notebooks

def test_there_are_notebooks() -> None:
    assert SOURCES, "no notebooks/*.md found"


@pytest.mark.parametrize("md_path", SOURCES, ids=lambda p: p.stem)
def test_md_and_ipynb_agree(md_path: Path) -> None:
    problems = sync_problems(md_path, md_path.with_suffix(".ipynb"))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("md_path", SOURCES, ids=lambda p: p.stem)
def test_md_has_pairing_header(md_path: Path) -> None:
    problems = header_problems(md_path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("ipynb_path", EXECUTED, ids=lambda p: p.stem)
def test_ipynb_has_a_source(ipynb_path: Path) -> None:
    assert ipynb_path.with_suffix(".md").exists(), (
        f"{ipynb_path.name} has no MyST source {ipynb_path.with_suffix('.md').name}")


@pytest.mark.parametrize("ipynb_path", EXECUTED, ids=lambda p: p.stem)
def test_ipynb_has_stored_outputs(ipynb_path: Path) -> None:
    problems = output_problems(ipynb_path)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the checkers themselves

_HEADER = """---
jupytext:
  formats: ipynb,md:myst
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def _write_pair(tmp_path: Path, md_code: str, nb_code: str, outputs: bool = True) -> tuple[Path, Path]:
    md_path = tmp_path / "99_demo.md"
    md_path.write_text(_HEADER + "\n# Demo\n\n```{code-cell} ipython3\n" + md_code + "\n```\n")
    nb = jupytext.read(md_path)
    nb.cells[1].source = nb_code
    if outputs:
        nb.cells[1].execution_count = 1
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    ipynb_path = md_path.with_suffix(".ipynb")
    nbformat.write(nb, ipynb_path)
    return md_path, ipynb_path


def test_checker_accepts_an_executed_pair(tmp_path: Path) -> None:
    md_path, ipynb_path = _write_pair(tmp_path, "print(1 + 1)", "print(1 + 1)")
    assert sync_problems(md_path, ipynb_path) == []
    assert output_problems(ipynb_path) == []
    assert header_problems(md_path) == []


def test_checker_detects_different_code(tmp_path: Path) -> None:
    md_path, ipynb_path = _write_pair(tmp_path, "print(1 + 1)", "print(1 + 2)")
    problems = sync_problems(md_path, ipynb_path)
    assert len(problems) == 1 and "differs" in problems[0]


def test_checker_detects_missing_outputs(tmp_path: Path) -> None:
    _, ipynb_path = _write_pair(tmp_path, "print(1 + 1)", "print(1 + 1)", outputs=False)
    problems = output_problems(ipynb_path)
    assert any("no stored outputs" in p for p in problems)
    assert any("never executed" in p for p in problems)


def test_checker_detects_a_missing_partner_and_header(tmp_path: Path) -> None:
    md_path = tmp_path / "98_alone.md"
    md_path.write_text("# Alone\n\n```{code-cell} ipython3\nx = 1\n```\n")
    assert "missing" in sync_problems(md_path, md_path.with_suffix(".ipynb"))[0]
    assert header_problems(md_path)
