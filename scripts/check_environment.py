"""Keep environment.yml and pyproject.toml from drifting apart, and check an interpreter.

pyproject.toml is the one list of ashlib's dependencies. environment.yml (conda) must give
everything that the core and the extras scripts/setup.sh installs (``.[test,book]``) need,
either by installing the project with those extras from its pip section or by listing the
packages, and it must list nothing that pyproject.toml does not ask for.

    python scripts/check_environment.py conda [environment.yml]   # the drift check
    python scripts/check_environment.py installed                 # is this interpreter ready?

``installed`` is what scripts/setup.sh runs in an environment it did not create (an active
conda env, ``ASHLIB_PYTHON``): exit status 0 when ashlib is installed from this checkout and
every requirement of the core and the setup extras is satisfied, 1 otherwise.
tests/test_environment.py runs the drift check on the real files and on broken copies.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# conda-forge names that differ from the PyPI names (after PEP 503 normalisation)
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "matplotlib-base": "matplotlib",
    "py-opencv": "opencv-python",
    "python-graphviz": "graphviz",
    "onnxruntime-cpp": "onnxruntime",
    "pytables": "tables",
}
# conda entries that are the environment itself, not a requirement of the project
CONDA_TOOLING = {"python", "pip"}


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def extras_of_setup(setup_sh: Path = ROOT / "scripts" / "setup.sh") -> list[str]:
    """The extras scripts/setup.sh installs (``pip install -e ".[test,book]"``)."""
    m = re.search(r"-e\s+[\"']?\.\[([^\]]+)\]", setup_sh.read_text())
    if m is None:
        raise ValueError(f"{setup_sh}: no `pip install -e .[extras]` line")
    return [e.strip() for e in m.group(1).split(",") if e.strip()]


def requirement_lines(pyproject: dict, extras) -> list[tuple[str, str]]:
    """(requirement, where it comes from) for the core and `extras` of the project.

    Extras that name the project itself (``ashlib[plots]`` inside ``test``) are followed.
    """
    from packaging.requirements import Requirement

    project = pyproject["project"]
    own = normalize(project["name"])
    optional = project.get("optional-dependencies", {})
    found: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(reqs, where):
        for line in reqs:
            req = Requirement(line)
            if normalize(req.name) == own:
                for extra in sorted(req.extras):
                    visit(extra)
            else:
                found.append((line, where))

    def visit(extra):
        if extra in seen:
            return
        seen.add(extra)
        if extra not in optional:
            raise KeyError(f"pyproject.toml has no extra {extra!r}")
        add(optional[extra], f"extra {extra}")

    add(project.get("dependencies", []), "core")
    for extra in extras:
        visit(extra)
    return found


def requirements(pyproject: dict, extras) -> dict[str, list[str]]:
    """Normalised name -> where it comes from, for the core and `extras` of the project."""
    from packaging.requirements import Requirement

    found: dict[str, list[str]] = {}
    for line, where in requirement_lines(pyproject, extras):
        found.setdefault(normalize(Requirement(line).name), []).append(where)
    return found


def parse_conda_spec(spec: str) -> tuple[str, str]:
    """'conda-forge::numpy >=1.23' -> ('numpy', '>=1.23')."""
    m = re.fullmatch(r"\s*(?:[\w.-]+::)?([A-Za-z0-9][A-Za-z0-9_.-]*)\s*(.*?)\s*", spec)
    if m is None:
        raise ValueError(f"cannot read the conda spec {spec!r}")
    return m.group(1), m.group(2)


def _path_line(line: str):
    """(folder, extras) of a pip line that installs a local folder, else None."""
    text = re.sub(r"^(-e|--editable)\s+", "", line.strip())
    m = re.fullmatch(r"([./~][^\[\s]*)(?:\[([^\]]*)\])?", text)
    if m is None:
        return None
    return m.group(1), [e.strip() for e in (m.group(2) or "").split(",") if e.strip()]


def check_conda_environment(env_path: Path, pyproject_path: Path, extras) -> list[str]:
    """Every way environment.yml and pyproject.toml disagree, as sentences; [] if none.

    `extras`: the extras the book and the tests need (those scripts/setup.sh installs).
    """
    import yaml
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    env_path, pyproject_path = Path(env_path), Path(pyproject_path)
    pyproject = load_toml(pyproject_path)
    env = yaml.safe_load(env_path.read_text()) or {}
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    problems: list[str] = []

    needed = requirements(pyproject, extras)

    conda: dict[str, str] = {}  # PyPI name -> conda entry
    pip_lines: list[str] = []
    for dep in env.get("dependencies", []) or []:
        if isinstance(dep, dict):
            pip_lines += [str(x) for x in dep.get("pip", []) or []]
            continue
        name, version = parse_conda_spec(str(dep))
        if normalize(name) == "python":
            m = re.fullmatch(r"=*\s*(\d+(?:\.\d+)*)(?:\.\*)?", version)
            requires = project.get("requires-python")
            if m and requires and Version(m.group(1)) not in SpecifierSet(requires):
                problems.append(f"environment.yml pins python {version} but pyproject.toml "
                                f"requires-python is {requires}")
            continue
        if normalize(name) in CONDA_TOOLING:
            continue
        pypi = CONDA_TO_PYPI.get(normalize(name), normalize(name))
        conda[pypi] = str(dep)
        if version:
            problems.append(f"environment.yml gives {dep!r} a version: the bounds live in "
                            f"pyproject.toml, list conda packages by name only")

    installed_extras: list[str] | None = None
    pip_reqs: dict[str, str] = {}
    for line in pip_lines:
        if line.strip().startswith("-") and not re.match(r"(-e|--editable)\s", line.strip()):
            continue  # pip options (--extra-index-url ...)
        local = _path_line(line)
        if local is not None:
            folder = (env_path.parent / Path(local[0]).expanduser()).resolve()
            if folder == pyproject_path.parent.resolve():
                installed_extras = (installed_extras or []) + local[1]
            else:
                problems.append(f"environment.yml installs {line!r}: {folder} is not the "
                                f"project folder {pyproject_path.parent.resolve()}")
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            problems.append(f"environment.yml: cannot read the pip line {line!r}")
            continue
        pip_reqs[normalize(req.name)] = line

    if installed_extras is None:
        problems.append("environment.yml does not install ashlib itself: its pip section "
                        f"needs `-e .[{','.join(extras)}]`")
        covered: dict[str, list[str]] = {}
    else:
        unknown = [e for e in installed_extras if e not in optional]
        for e in unknown:
            problems.append(f"environment.yml installs the extra {e!r}, which pyproject.toml "
                            f"does not define (pip would only warn)")
        covered = requirements(pyproject, [e for e in installed_extras if e in optional])

    for name, where in sorted(needed.items()):
        if name not in covered and name not in conda and name not in pip_reqs:
            problems.append(f"{name} (pyproject.toml: {', '.join(where)}) is missing from "
                            f"environment.yml")
    for name, entry in sorted({**conda, **pip_reqs}.items()):
        if name not in needed:
            problems.append(f"environment.yml lists {entry!r}, which pyproject.toml does not "
                            f"require for the core or the extras {', '.join(extras)}")
    return problems


def check_installed(pyproject_path: Path = ROOT / "pyproject.toml", extras=None) -> list[str]:
    """What the running interpreter lacks of the core and `extras`, as sentences."""
    import importlib.metadata as md
    import importlib.util

    from packaging.requirements import Requirement

    pyproject = load_toml(pyproject_path)
    project = pyproject["project"]
    extras = extras_of_setup() if extras is None else extras
    problems = []
    spec = importlib.util.find_spec(project["name"])
    where = Path(spec.origin).resolve().parent if spec and spec.origin else None
    if where != (pyproject_path.parent / project["name"]).resolve():
        problems.append(f"{project['name']} is not installed from {pyproject_path.parent} "
                        f"(found: {where})")
    lines = [line for line, _ in requirement_lines(pyproject, extras)]
    for line in lines:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            problems.append(f"{req.name} is not installed ({line})")
            continue
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name} {version} does not satisfy {line}")
    return problems


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["conda"]:
        env = Path(argv[1]) if len(argv) > 1 else ROOT / "environment.yml"
        problems = check_conda_environment(env, ROOT / "pyproject.toml", extras_of_setup())
    elif argv[:1] == ["installed"]:
        try:
            problems = check_installed()
        except ImportError as e:  # packaging (or tomli) missing: not ready either
            problems = [f"cannot check this interpreter: {e}"]
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for p in problems:
        print(f"[check_environment] {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
