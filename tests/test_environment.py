"""environment.yml (conda) and pyproject.toml (pip) must give the same environment.

The check itself is scripts/check_environment.py; here it runs on the real files, and on
broken copies in tmp_path to show that it fails where it should.
"""
import importlib.util
import shutil
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_environment",
                                               ROOT / "scripts" / "check_environment.py")
CE = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(CE)

pytest.importorskip("yaml")
try:
    import tomllib  # noqa: F401
except ImportError:  # Python 3.10
    pytest.importorskip("tomli")

EXTRAS = CE.extras_of_setup(ROOT / "scripts" / "setup.sh")

GOOD_ENV = """
name: ashlib
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip
  - numpy
  - pip:
      - -e .[test,book]
"""

# what environment.yml was before issue 15: `-e .` brings no extras
OLD_ENV = """
name: ashlib
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip
  - numpy
  - sympy
  - mpmath
  - matplotlib
  - tqdm
  - scikit-learn
  - pytest
  - pytest-xdist
  - hypothesis
  - pip:
      - torch>=2.1
      - jupyter-book>=1.0,<2
      - sphinxcontrib-bibtex>=2.5
      - jupytext>=1.16
      - nbval>=0.11
      - ipykernel>=6
      - -e .
"""

SMALL_PYPROJECT = """
[project]
name = "ashlib"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["torch>=2.1", "NumPy>=1.23"]

[project.optional-dependencies]
plots = ["matplotlib>=3.6"]
test = ["pytest>=7", "PyYAML>=6", "ashlib[plots]"]
book = ["jupyter_book>=1.0,<2", "sphinx-mathjax-offline>=0.0.2"]
other = ["seaborn"]
"""


def check(tmp_path, env, pyproject=None, extras=("test", "book")):
    """Problems of `env` against `pyproject` (default: the real one), both in tmp_path."""
    if pyproject is None:
        shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    else:
        (tmp_path / "pyproject.toml").write_text(textwrap.dedent(pyproject))
    (tmp_path / "environment.yml").write_text(textwrap.dedent(env))
    return CE.check_conda_environment(tmp_path / "environment.yml",
                                      tmp_path / "pyproject.toml", list(extras))


def test_environment_yml_matches_pyproject():
    problems = CE.check_conda_environment(ROOT / "environment.yml", ROOT / "pyproject.toml",
                                          EXTRAS)
    assert problems == [], "\n".join(problems)


def test_setup_installs_the_extras_of_both_commands():
    # test.sh and build_book.sh run setup.sh; the conda environment is checked against these
    assert {"test", "book"} <= set(EXTRAS)


def test_the_old_environment_is_caught(tmp_path):
    problems = "\n".join(check(tmp_path, OLD_ENV))
    # the failure of the issue: _config.yml's extension, and every other extra-only package
    assert "sphinx-mathjax-offline (pyproject.toml: extra book) is missing" in problems
    assert "nbconvert" in problems and "pyyaml" in problems and "selenium" in problems
    assert "tqdm" not in problems  # a core dependency: `-e .` brings it


def test_extras_come_along_when_pyproject_grows(tmp_path):
    grown = SMALL_PYPROJECT.replace('"PyYAML>=6"', '"PyYAML>=6", "onnx>=1.15"')
    assert check(tmp_path, GOOD_ENV, grown) == []
    listed = GOOD_ENV.replace("-e .[test,book]", "-e .").replace(
        "  - numpy\n", "  - numpy\n  - pytest\n  - pyyaml\n  - matplotlib\n  - jupyter-book\n"
        "  - sphinx-mathjax-offline\n")
    assert check(tmp_path, listed, SMALL_PYPROJECT) == []
    problems = check(tmp_path, listed, grown)
    assert len(problems) == 1 and problems[0].startswith("onnx (pyproject.toml: extra test)")


def test_a_conda_package_pyproject_does_not_need_is_caught(tmp_path):
    env = GOOD_ENV.replace("  - numpy\n", "  - numpy\n  - seaborn\n")
    problems = check(tmp_path, env, SMALL_PYPROJECT)
    assert len(problems) == 1 and "'seaborn'" in problems[0], problems
    # the same for a pip line
    env = GOOD_ENV.replace("-e .[test,book]", "-e .[test,book]\n      - requests>=2")
    problems = check(tmp_path, env, SMALL_PYPROJECT)
    assert len(problems) == 1 and "'requests>=2'" in problems[0], problems


def test_names_are_normalised_and_mapped(tmp_path):
    env = GOOD_ENV.replace("  - numpy\n", "  - NumPy\n  - pytorch\n  - matplotlib-base\n"
                           "  - PyYaml\n  - conda-forge::Jupyter_Book\n")
    assert check(tmp_path, env, SMALL_PYPROJECT) == []
    assert CE.normalize("Jupyter_Book") == CE.normalize("jupyter.book") == "jupyter-book"
    assert CE.parse_conda_spec("conda-forge::numpy >=1.23") == ("numpy", ">=1.23")


def test_extras_that_name_the_project_are_followed(tmp_path):
    # test pulls ashlib[plots]: matplotlib is needed, and covered by -e .[test,book]
    reqs = CE.requirements(CE.load_toml(ROOT / "pyproject.toml"), [])
    assert "torch" in reqs
    (tmp_path / "p.toml").write_text(SMALL_PYPROJECT)
    reqs = CE.requirements(CE.load_toml(tmp_path / "p.toml"), ["test"])
    assert reqs["matplotlib"] == ["extra plots"] and "seaborn" not in reqs
    env = GOOD_ENV.replace("-e .[test,book]", "-e .[book]").replace(
        "  - numpy\n", "  - numpy\n  - pytest\n  - pyyaml\n")
    problems = check(tmp_path, env, SMALL_PYPROJECT)
    assert len(problems) == 1 and problems[0].startswith("matplotlib (pyproject.toml: extra plots)")


@pytest.mark.parametrize("env, expected", [
    (GOOD_ENV.replace("-e .[test,book]", "-e .[tests,book]"), "the extra 'tests'"),
    (GOOD_ENV.replace("      - -e .[test,book]\n", "      - sphinx-mathjax-offline\n"),
     "does not install ashlib itself"),
    (GOOD_ENV.replace("-e .[test,book]", "-e ./sub[test,book]"), "is not the project folder"),
    (GOOD_ENV.replace("  - numpy\n", "  - numpy>=1.23\n"), "gives 'numpy>=1.23' a version"),
    (GOOD_ENV.replace("python=3.11", "python=3.9"), "requires-python is >=3.10"),
])
def test_broken_environments_are_caught(tmp_path, env, expected):
    problems = check(tmp_path, env, SMALL_PYPROJECT)
    assert any(expected in p for p in problems), problems


def test_the_command_line_fails_on_a_broken_environment(tmp_path, capsys):
    (tmp_path / "environment.yml").write_text(OLD_ENV)
    assert CE.main(["conda", str(tmp_path / "environment.yml")]) == 1
    assert "sphinx-mathjax-offline" in capsys.readouterr().err
    assert CE.main(["conda", str(ROOT / "environment.yml")]) == 0


def test_check_installed_reports_what_is_missing(tmp_path, monkeypatch):
    (tmp_path / "envprobe").mkdir()
    (tmp_path / "envprobe" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "envprobe"
        version = "0"
        dependencies = ["pytest>=1", "surely-not-installed-pkg>=1"]
        [project.optional-dependencies]
        test = ["pytest>=999", "never-on-this-platform; sys_platform == 'no-such-os'"]
        """))
    problems = CE.check_installed(tmp_path / "pyproject.toml", ["test"])
    assert any("envprobe is not installed from" in p for p in problems)
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = CE.check_installed(tmp_path / "pyproject.toml", ["test"])
    assert len(problems) == 2, problems
    assert "surely-not-installed-pkg is not installed" in problems[0]
    assert "does not satisfy pytest>=999" in problems[1]
