"""Presentation helpers: the progress switch, the plot style and the notebook tables."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from ashlib import plotstyle
from ashlib.experiments.report import Tex, math_line, table
from ashlib.utils.progress import progress_bar, progress_enabled


def test_progress_follows_the_env_switch(monkeypatch) -> None:
    monkeypatch.setenv("ASHLIB_PROGRESS", "0")
    assert not progress_enabled(True)
    monkeypatch.setenv("ASHLIB_PROGRESS", "1")
    assert progress_enabled(True) and not progress_enabled(False)


def test_progress_off_without_a_terminal(monkeypatch) -> None:
    monkeypatch.delenv("ASHLIB_PROGRESS", raising=False)
    fake = io.StringIO()  # not a TTY, like a notebook kernel's stream or a log file
    monkeypatch.setattr(sys, "stderr", fake)
    assert not progress_enabled(True)
    assert list(progress_bar(range(3), desc="x")) == [0, 1, 2]
    assert fake.getvalue() == ""


def test_progress_on_a_terminal(monkeypatch) -> None:
    monkeypatch.delenv("ASHLIB_PROGRESS", raising=False)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress_enabled(True)


def test_palette_and_activation_colours() -> None:
    assert len(set(plotstyle.OKABE_ITO.values())) == 8
    assert plotstyle.color("ash") == plotstyle.color("ASH")
    assert len({plotstyle.color(a) for a in ("relu", "swish", "ash")}) == 3
    assert set(plotstyle.ACT_COLORS.values()) <= set(plotstyle.OKABE_ITO.values())


def test_shared_norm_covers_both_panels() -> None:
    norm = plotstyle.shared_norm(np.array([[91.0, np.nan]]), [98.7, 99.1])
    assert (norm.vmin, norm.vmax) == (91.0, 99.1)


def test_styled_figure_uses_the_palette() -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    @plotstyle.styled
    def fig():
        f = Figure()
        ax = f.add_subplot()
        (line,) = ax.plot([0, 1])
        return line.get_color(), f.get_dpi()

    colour, dpi = fig()
    assert colour.lower() == plotstyle.OKABE_ITO["blue"].lower() and dpi == plotstyle.DPI


def test_table_renders_markdown_and_text() -> None:
    t = table([{"act": "relu", "acc": 91.234, "note": "a|b"}], digits=1, caption="profile quick")
    md = t._repr_markdown_()
    assert md.splitlines()[0] == "profile quick"
    assert "| act | acc | note |" in md and "|:---|---:|:---|" in md and "a\\|b" in md
    assert "91.2" in str(t) and "profile quick" in str(t)


def test_math_line_sets_text_and_math() -> None:
    sp = pytest.importorskip("sympy")
    a = sp.Symbol("alpha")
    assert math_line("limit", a**2, Tex(r"\to 0"))._repr_markdown_() == r"limit $\alpha^{2}$ $\to 0$"
