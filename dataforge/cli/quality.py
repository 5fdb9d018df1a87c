"""``dataforge dedupe`` and ``dataforge leakage``."""

from __future__ import annotations

import argparse

from dataforge.cli.args import WHERE_HELP, Commands
from dataforge.cli.render import out, print_json


def cmd_dedupe(a: argparse.Namespace) -> int:
    from dataforge.api import dedupe

    res = dedupe(a.store, where=a.where, threshold=a.threshold, near=not a.exact_only, tag=a.tag, keep=a.keep)
    if a.json:
        print_json(
            {
                "images": res.images,
                "duplicates": res.duplicates,
                "clusters": [c.__dict__ for c in res.clusters],
            }
        )
        return 0
    exact = sum(1 for c in res.clusters if c.kind == "exact")
    out(
        f"{res.images} images: {len(res.clusters)} clusters of duplicates ({exact} exact, "
        f"{len(res.clusters) - exact} near, pHash/dHash within {res.threshold} bits), {res.duplicates} "
        f"images beyond the first of each; {res.hashed} images hashed now, the rest from the cache"
    )
    for c in res.clusters[:20]:
        out(
            f"  {c.kind:5s} {len(c.image_ids)} images: ids {', '.join(map(str, c.image_ids[:8]))}"
            + (" ..." if len(c.image_ids) > 8 else "")
            + (f" (up to {c.distance} bits apart)" if c.kind == "near" else "")
        )
    if len(res.clusters) > 20:
        out(f"  ... and {len(res.clusters) - 20} more (--json lists them all)")
    if a.tag:
        out(f"tagged {res.tagged} images {a.tag!r} (all but the {a.keep} of each cluster)")
    return 0


def cmd_leakage(a: argparse.Namespace) -> int:
    from dataforge.api import leakage

    res = leakage(a.store, threshold=a.threshold, apply=a.apply)
    if a.json:
        print_json({"leaks": [leak.__dict__ for leak in res.leaks], "pairs": res.pairs, "moved": res.moved})
        return 0
    if not res.leaks:
        out("no duplicate cluster spans two splits")
        return 0
    out(
        f"{len(res.leaks)} duplicate clusters span splits: "
        + ", ".join(f"{pair} {n}" for pair, n in sorted(res.pairs.items()))
    )
    for leak in res.leaks[:20]:
        where = ", ".join(f"{sp}: {ids}" for sp, ids in leak.splits.items())
        out(f"  {where} -> move {leak.move['image_ids']} to {leak.move['to']}")
    if res.moved:
        out(f"moved {res.moved} images: no cluster spans two splits now")
    else:
        out("apply those moves with --apply")
    return 1 if not res.moved else 0


def add_quality(add: Commands) -> None:
    sp = add(
        "dedupe",
        cmd_dedupe,
        "find exact and near-duplicate images (perceptual hashes), optionally tag all but one per cluster",
        "Exact duplicates by SHA-256; near duplicates (re-encoded, resized, slightly cropped, colour-"
        "shifted) by pHash and dHash within --threshold bits, found without comparing all pairs.",
    )
    sp.add_argument("store")
    sp.add_argument("--where", help=WHERE_HELP)
    sp.add_argument(
        "--threshold", type=int, default=10, help="differing bits of pHash or dHash (default 10 of 64)"
    )
    sp.add_argument("--exact-only", action="store_true", help="identical files only (no image is read)")
    sp.add_argument("--tag", help="tag every image of each cluster but one with this tag")
    sp.add_argument(
        "--keep", choices=["first", "last"], default="first", help="which one --tag spares (by id)"
    )
    sp.add_argument("--json", action="store_true")
    sp = add(
        "leakage",
        cmd_leakage,
        "duplicate clusters that span train/val/test, with the moves that remove the leaks",
        "Exits 1 when a cluster spans splits (and --apply was not given).",
    )
    sp.add_argument("store")
    sp.add_argument("--threshold", type=int, default=10, help="as dedupe's (default 10)")
    sp.add_argument("--apply", action="store_true", help="move each leaking cluster into one split")
    sp.add_argument("--json", action="store_true")
