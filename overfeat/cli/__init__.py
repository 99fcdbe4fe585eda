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
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from overfeat import __version__
from overfeat.errors import OverfeatError

from .args import EXTRA, as_flags

# The order of the verbs in 'overfeat --help': the pipeline's. A new verb module not listed
# here comes after them.
ORDER = (
    "export",
    "inspect",
    "infer",
    "datasets",
    "eval",
    "train",
    "calibrate",
    "convert",
    "build",
    "validate",
    "bench",
    "triton_repo",
    "serve",
)
_NOT_VERBS = {"args", "__main__"}
# The flags that name what a command writes; every other file a flag names is an input, which no
# output may replace (overfeat.fileio.protect_inputs). --cache is read and rewritten on purpose.
OUTPUTS = frozenset({"output", "json", "plot", "report", "cache", "draw", "out", "timing_cache", "max_memory"})


def verbs() -> list:
    """The verb modules of this package, in the order of :data:`ORDER`."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_VERBS and not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes read like the others: ``overfeat: error: ...``, exit 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"overfeat: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="overfeat", description="Export, build and run OverFeat networks.")
    parser.add_argument("--version", action="version", version=f"overfeat {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in verbs():
        verb.add(sub)
    for leaf in _leaves(sub):
        leaf.add_argument(
            "--max-memory",
            type=memory_size,
            default=None,
            help="refuse work estimated to need more memory than this, e.g. 8G "
            "(default: $OVERFEAT_MAX_MEMORY, else half of this machine's memory)",
        )
    return parser


def _leaves(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """The parsers that run a command (a verb, or a verb's sub-verb such as 'datasets shapes')."""
    out = []
    for parser in dict.fromkeys(sub.choices.values()):
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        out += _leaves(nested[0]) if nested else [parser]
    return out


def memory_size(text: str) -> int:
    from overfeat.errors import InputError
    from overfeat.limits import parse_bytes

    try:
        return parse_bytes(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _guarded(args):
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
        print("overfeat: interrupted; unfinished files were removed", file=sys.stderr)
        return 130
    except _Terminated:
        print("overfeat: terminated; unfinished files were removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:  # output piped into a command that stopped reading (head, less)
        sys.stderr.close()
        return 0


class _Terminated(BaseException):
    """SIGTERM, raised where the command is, so that its writes clean up as on Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise _Terminated()


@contextmanager
def _guarded(args: argparse.Namespace) -> Iterator[None]:
    """The inputs protected from the command's writes, and SIGTERM turned into an exception."""
    from overfeat import limits
    from overfeat.fileio import clear_inputs, protect_inputs

    limits.set_max_memory(getattr(args, "max_memory", None))

    values = [v for k, v in vars(args).items() if k not in OUTPUTS]
    protect_inputs(str(w) for v in values for w in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(w, str))
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        yield
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        clear_inputs()
        limits.set_max_memory(None)
