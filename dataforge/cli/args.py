"""What the command modules share to define their arguments."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from dataforge.errors import UsageError

Handler = Callable[[argparse.Namespace], int]

WHERE_HELP = (
    "filter images, e.g. \"category == 'cat' and boxes > 3\"; fields: id, file, width, height, "
    "split, boxes, category, tag, label; functions: count(name), glob(pattern)"
)


class Commands:
    """The subcommands of ``dataforge`` being defined: ``add(name, handler, help)`` adds one and
    returns its parser; ``sub`` is argparse's subparsers action, for a command with subcommands."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self.sub = sub

    def __call__(
        self, name: str, handler: Handler, help: str, description: str | None = None
    ) -> argparse.ArgumentParser:
        sp = self.sub.add_parser(
            name,
            help=help,
            description=description or help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.set_defaults(handler=handler)
        return sp


def format_options(pairs: list[str] | None) -> dict[str, str]:
    """--option KEY=VALUE pairs for a format plugin."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option {pair!r}: expected KEY=VALUE, e.g. --option coordinates=devkit")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def parse_ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--ids {text!r}: expected comma-separated integers, e.g. --ids 1,2,3") from None
