"""The ``dataforge`` command line. Each command parses, calls one function of :mod:`dataforge.api`,
and renders its result; one module per group of commands (``data``, ``augment``, ``train``,
``evaluate``, ``labelstudio``, ``doctor``), the printing in ``render``.

Errors from the ``DataforgeError`` hierarchy print one line (plus a hint) and exit with the
class's code (see ``dataforge.errors``); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dataforge import __version__
from dataforge.cli import augment, data, doctor, evaluate, labelstudio, quality, train
from dataforge.cli.args import Commands
from dataforge.cli.render import err
from dataforge.errors import DataforgeError

#: the commands, in the order ``dataforge --help`` lists them
COMMANDS = (
    data.add_import,
    data.add_info,
    data.add_tag,
    augment.add_augment,
    train.add_trainers,
    train.add_train,
    train.add_predict,
    train.add_demo,
    data.add_split,
    data.add_validate,
    quality.add_quality,
    data.add_export,
    evaluate.add_evaluate,
    labelstudio.add_labelstudio,
    evaluate.add_app,
    doctor.add_doctor,
    data.add_formats,
    data.add_history,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dataforge",
        description="Computer-vision datasets from import to evaluation. Run `dataforge COMMAND --help` for details.",
        epilog="exit codes: 0 ok, 1 check found problems, 2 usage error, 3 bad input data, 4 store error, "
        "5 component missing, 130 interrupted",
    )
    p.add_argument("--version", action="version", version=f"dataforge {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    add = Commands(p.add_subparsers(dest="command", metavar="COMMAND"))
    for define in COMMANDS:
        define(add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except DataforgeError as exc:
        if args.debug:
            raise
        err(f"error: {exc.message}")
        if exc.hint:
            err(f"hint: {exc.hint}")
        return exc.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`dataforge info STORE | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
