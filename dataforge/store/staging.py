"""Staging area and commit journal: how new media enter ``images/`` all-or-nothing.

An import writes its images into a hidden ``<store>/.staging-<txid>/`` folder that mirrors
``images/``. At commit it writes a journal ``<store>/.commit-<txid>.json`` naming what it will
move, moves whole folders where ``images/`` has none of that name yet (one rename for all the files
inside) and single files otherwise, and then replaces ``annotations.json``. Only then are the
journal and the staging folder removed.

A process killed at any point leaves ``annotations.json`` as it was. The next command that takes
the store lock calls :func:`recover`, which deletes staging folders and every journaled file that
``annotations.json`` does not refer to.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable

STAGING_PREFIX = ".staging-"
JOURNAL_PREFIX = ".commit-"


def plan_moves(staging: str, images: str) -> list[str]:
    """Relative paths to move from ``staging`` into ``images``: whole folders wherever ``images``
    has no folder of that name yet (one rename for all the files inside), files otherwise."""
    moves: list[str] = []

    def walk(rel: str) -> None:
        src = os.path.join(staging, rel) if rel else staging
        for entry in sorted(os.listdir(src)):
            r = f"{rel}/{entry}" if rel else entry
            dst = os.path.join(images, r)
            if os.path.isdir(os.path.join(staging, r)) and os.path.isdir(dst):
                walk(r)
            else:
                moves.append(r)

    walk("")
    return moves


def commit_moves(store_root: str, staging: str, images: str, txid: str) -> str:
    """Move staged files into ``images`` after writing a journal of what moves. Returns the journal."""
    moves = plan_moves(staging, images)
    journal = os.path.join(store_root, f"{JOURNAL_PREFIX}{txid}.json")
    with open(journal, "w") as f:
        json.dump(moves, f)
        f.flush()
        os.fsync(f.fileno())
    for rel in moves:
        os.replace(os.path.join(staging, rel), os.path.join(images, rel))
    return journal


def recover(store_root: str, images: str, referenced_names: Callable[[], set[str]]) -> int:
    """Undo what an interrupted import left: staging folders, and moved files that no record refers to.

    Called under the store lock, so nothing found here belongs to a running import. Returns the
    number of files removed.
    """
    removed = 0
    referenced: set[str] = set()
    for entry in sorted(os.listdir(store_root)):
        path = os.path.join(store_root, entry)
        if entry.startswith(STAGING_PREFIX) and os.path.isdir(path):
            removed += sum(len(files) for _d, _s, files in os.walk(path))
            shutil.rmtree(path)
        elif entry.startswith(JOURNAL_PREFIX) and entry.endswith(".json"):
            referenced = referenced or referenced_names()
            try:
                with open(path) as f:
                    moves = json.load(f)
            except (OSError, ValueError):
                moves = []
            for rel in moves:
                target = os.path.join(images, rel)
                if os.path.isdir(target) and not os.path.islink(target):
                    for dirpath, _dirs, files in os.walk(target, topdown=False):
                        for name in files:
                            full = os.path.join(dirpath, name)
                            if os.path.relpath(full, images).replace(os.sep, "/") not in referenced:
                                os.unlink(full)
                                removed += 1
                        if not os.listdir(dirpath):
                            os.rmdir(dirpath)
                elif os.path.lexists(target) and rel not in referenced:
                    os.unlink(target)
                    removed += 1
            os.unlink(path)
    return removed
