"""Command line: ``python -m ashlib list`` and ``python -m ashlib run NAME --profile quick --out DIR``.

Examples::

    python -m ashlib list
    python -m ashlib verdicts            # every claim's verdict, from results/verdicts.json
    python -m ashlib verdicts --update   # rebuild it from the checks and the stored book runs
    python -m ashlib run farhadi-table1 --profile quick --out runs/t1
    python -m ashlib run farhadi-table1 --out runs/t1 --seeds 0 1 2 --epochs 50 --set lr=0.05 folds=[0,1,2,3,4]
    torchrun --nproc-per-node 2 -m ashlib run NAME ...    # DDP inside fit; rank 0 writes the files

``--set key=value`` overrides any setting of the experiment's config (values are read as
Python literals: ``lr=0.05``, ``seeds=(0,1)``, ``dataset=mnist``); ``python -m ashlib show NAME``
prints the settings of both profiles.

Usage errors (an unknown experiment or setting, a value of the wrong type, a missing optional
package) end with one ``error:`` line on stderr and exit status 2.

Runs resume: each finished unit (a seed, a grid cell; inside a long training, its last epoch)
is written to ``--out`` as it ends, and the same command with the same ``--out`` skips what is
done. ``--out`` remembers the configuration; another configuration there is refused.
Every run writes ``provenance.json`` (command, commit, profile, seeds, device, torch, wall time
per session) beside its results; the ``book`` profile's runs are committed that way under
``results/book/NAME`` (see :mod:`ashlib.experiments.stored`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import json
import sys
import time
from typing import Sequence

__all__ = ["main"]


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _fail(message: object) -> int:
    """Print one ``error:`` line to stderr; return the exit status of a usage error (2, like argparse)."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def _missing_run_extra(no_figures: bool) -> str | None:
    """Before a run starts: the message for a missing package that every run needs (tqdm for the
    progress of ``fit``; matplotlib for the figures unless ``--no-figures``), else None."""
    from .experiments.registry import missing_extra  # noqa: PLC0415

    needed = ["tqdm"] + ([] if no_figures else ["matplotlib"])
    for module in needed:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return missing_extra(exc) or f"cannot import {module} ({exc})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ashlib`` (and the ``ashlib`` console script)."""
    from .experiments import PROFILES, experiment_names, get_experiment, make_config  # noqa: PLC0415
    from .experiments.registry import missing_extra, run_config  # noqa: PLC0415
    from .experiments.runstore import RunConfigMismatch, RunStore  # noqa: PLC0415
    from .experiments.stored import write_provenance  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m ashlib", description="Run the ashlib experiments.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered experiments")
    show = sub.add_parser("show", help="print an experiment's settings for each profile")
    show.add_argument("name")
    ver = sub.add_parser("verdicts", help="print every claim's verdict from the ledger (results/verdicts.json)")
    ver.add_argument("--update", action="store_true",
                     help="rebuild the ledger from its sources (checks, stored book runs) and write it")
    sub.add_parser("build-native", help="compile the native CPU kernels and ASH's C++ fast path into the cache "
                                        "now (scripts/setup.sh runs this at install time, so that no process "
                                        "compiles at its first call)")
    run = sub.add_parser("run", help="run an experiment and write JSON, CSV and figures")
    run.add_argument("name", help="experiment name (see `list`)")
    run.add_argument("--profile", choices=PROFILES, default=None,
                     help="quick (minutes; what CI runs), book (what the book shows, up to an hour) or paper (the paper's settings); default: $ASHLIB_PROFILE or quick")
    run.add_argument("--out", required=True,
                     help="output folder (created); finished units are stored there as they end, and running "
                          "the same command again resumes")
    run.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to run, e.g. --seeds 0 1 2")
    run.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    run.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override any config setting")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--no-figures", action="store_true", help="write JSON and CSV only")
    args = parser.parse_args(argv)

    if args.command == "build-native":
        from .ops import native  # noqa: PLC0415

        try:
            path = native.build()
        except RuntimeError as exc:
            return _fail(exc)
        print(f"[ashlib] native kernels: {path}", flush=True)
        try:
            path = native.build_eager()
        except (RuntimeError, OSError) as exc:  # optional: ASH then runs its Python route
            print(f"[ashlib] no C++ fast path for ASH ({exc})", flush=True)
            return 0
        print(f"[ashlib] C++ fast path of ASH: {path}", flush=True)
        return 0
    if args.command == "list":
        for name in experiment_names():
            print(f"{name:24s} {get_experiment(name).description}")
        return 0
    if args.command == "verdicts":
        from .experiments.report import format_table  # noqa: PLC0415
        from .experiments.verdicts import build_ledger, read_ledger, write_ledger  # noqa: PLC0415

        try:
            ledger = build_ledger() if args.update else read_ledger()
        except (FileNotFoundError, ValueError) as exc:
            return _fail(exc)
        except ImportError as exc:
            return _fail(missing_extra(exc) or exc)
        if args.update:
            print(f"[ashlib] wrote {write_ledger(ledger).name}: {len(ledger)} claims", flush=True)
        print(format_table([{"claim": v.claim, "verdict": v.verdict, "source": v.source} for v in ledger.values()]))
        return 0
    if args.command == "show":
        try:
            configs = [(profile, make_config(args.name, profile)) for profile in PROFILES]
        except ValueError as exc:
            return _fail(exc)
        for profile, cfg in configs:
            print(f"[{profile}]")
            for k, v in dataclasses.asdict(cfg).items():
                print(f"  {k} = {v!r}")
        return 0

    from .experiments.report import format_table  # noqa: PLC0415
    from .train import init_distributed, is_main_process  # noqa: PLC0415

    init_distributed()
    try:
        overrides = _parse_sets(args.set)
    except ValueError as exc:
        return _fail(exc)
    if args.epochs is not None:
        overrides["epochs"] = str(args.epochs)
    seeds = tuple(args.seeds) if args.seeds else None
    if "seeds" in overrides:  # --set seeds=(0,1) means --seeds 0 1 (make_config takes seeds apart)
        if seeds is not None:
            return _fail("give the seeds once, with --seeds or with --set seeds=...")
        try:
            parsed = ast.literal_eval(overrides.pop("seeds"))
            seeds = tuple(int(s) for s in (parsed if isinstance(parsed, (list, tuple)) else (parsed,)))
        except (ValueError, SyntaxError, TypeError) as exc:
            return _fail(f"--set seeds expects integers, e.g. seeds=(0,1) ({exc})")
    try:
        cfg = make_config(args.name, args.profile, seeds, **overrides)
    except ValueError as exc:
        return _fail(exc)
    hint = _missing_run_extra(args.no_figures)
    if hint is not None:
        return _fail(f"{args.name}: {hint}")
    main_rank = is_main_process()
    if main_rank:
        print(f"[ashlib] {args.name}, profile {cfg.profile}: " + json.dumps(dataclasses.asdict(cfg)), flush=True)
    started = time.monotonic()
    try:
        store = RunStore(args.out, args.name, cfg, write=main_rank)
        result = run_config(args.name, cfg, progress=main_rank and not args.no_progress, out_dir=args.out,
                            store=store)
        if main_rank:
            if args.no_figures:
                result.figures = lambda: {}  # type: ignore[method-assign]
            paths = result.write(args.out)
            paths.append(write_provenance(args.out, args.name, cfg, ["python -m ashlib", *(argv if argv is not None
                                          else sys.argv[1:])], time.monotonic() - started,
                                          units_computed=len(store.computed), units_resumed=len(store.resumed),
                                          device=getattr(cfg, "device", None)))
    except (RunConfigMismatch, FileNotFoundError) as exc:  # another config in --out; a data set not on disk
        return _fail(exc)
    except ImportError as exc:
        hint = missing_extra(exc)
        if hint is None:
            raise
        return _fail(f"{args.name}: {hint}")
    if main_rank:
        tables = result.tables()
        key = next((k for k in tables if k.startswith("table")), None)
        if key:
            print(format_table(tables[key]))
        if hasattr(result, "verdicts"):
            print(format_table(result.verdicts()))
        print("[ashlib] wrote " + ", ".join(str(p) for p in paths), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
