"""The ``overfeat`` command line: one module per verb in this package.

A verb module has ``add(subparsers)``, which declares its flags (those several verbs share come
from the groups of :mod:`overfeat.cli.args`), and ``run(args) -> int``, which turns the flags
into the library's config objects, calls the library and prints. To add a verb, add a module
here; :func:`build_parser` finds it. Heavy libraries are imported by the verb that needs them.

A user mistake prints one line, ``overfeat: error: ...``, and exits with code 2; a failed check
exits with 1. The library's messages name its parameters; the CLI prints them as its flags
(:func:`overfeat.cli.args.as_flags`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from overfeat import __version__
from overfeat.errors import OverfeatError

from .args import EXTRA, as_flags

# The order of the verbs in 'overfeat --help': the pipeline's. A new verb module not listed
# here comes after them.
ORDER = ("export", "inspect", "infer", "datasets", "eval", "train", "calibrate", "convert", "build", "validate", "bench")
_NOT_VERBS = {"args", "__main__"}


def verbs() -> list:
    """The verb modules of this package, in the order of :data:`ORDER`."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_VERBS and not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="overfeat", description="Export, build and run OverFeat networks.")
    parser.add_argument("--version", action="version", version=f"overfeat {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in verbs():
        verb.add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OverfeatError as exc:
        print(f"overfeat: error: {as_flags(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        print(
            f"overfeat: error: '{args.verb}' needs the package {exc.name!r}, which is not installed: "
            f"pip install 'overfeat[{EXTRA.get(exc.name or '', 'export')}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("overfeat: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a command that stopped reading (head, less)
        sys.stderr.close()
        return 0
