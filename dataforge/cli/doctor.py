"""``dataforge doctor``."""

from __future__ import annotations

import argparse

from dataforge.cli.args import Commands
from dataforge.cli.render import out, print_json


def cmd_doctor(a: argparse.Namespace) -> int:
    from dataforge.api import doctor
    from dataforge.doctor import as_json

    checks = doctor(a.only)
    report = as_json(checks)
    if a.json:
        print_json(report)
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "no  ")
            out(f"[{mark}] {c.name:20s} {c.detail}")
            if c.hint:
                out(f"       {'':20s} fix: {c.hint}")
        out("all required components work" if report["ok"] else "some required components do not work")
    return 0 if report["ok"] else 1


def add_doctor(add: Commands) -> None:
    sp = add("doctor", cmd_doctor, "check which components work here, with a fix for each that does not")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--only", action="append", metavar="NAME", help="run only this check (repeatable)")
