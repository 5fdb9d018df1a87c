"""``dataforge dedupe``, ``dataforge leakage`` and ``dataforge mislabels``."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from dataforge.cli.args import WHERE_HELP, Commands
from dataforge.cli.render import out, print_json
from dataforge.errors import UsageError


def cmd_dedupe(a: argparse.Namespace) -> int:
    from dataforge.api import dedupe

    if a.exact_only and a.embeddings:
        raise UsageError("--exact-only reads no image; it cannot be combined with --embeddings")
    res = dedupe(
        a.store,
        where=a.where,
        threshold=a.threshold,
        near=not a.exact_only,
        tag=a.tag,
        keep=a.keep,
        embeddings=a.embeddings,
        similarity=a.similarity,
        device=a.device,
        fiftyone=a.fiftyone,
    )
    if a.json:
        print_json(
            {
                "images": res.images,
                "duplicates": res.duplicates,
                "clusters": [c.__dict__ for c in res.clusters],
                "fiftyone": res.fiftyone,
            }
        )
        return 0
    kinds = Counter(c.kind for c in res.clusters)
    semantic = f", {kinds['semantic']} semantic (embeddings >= {a.similarity})" if a.embeddings else ""
    out(
        f"{res.images} images: {len(res.clusters)} clusters of duplicates ({kinds['exact']} exact, "
        f"{kinds['near']} near, pHash/dHash within {res.threshold} bits{semantic}), {res.duplicates} "
        f"images beyond the first of each; {res.hashed} images hashed now, the rest from the cache"
    )
    for c in res.clusters[:20]:
        out(
            f"  {c.kind:8s} {len(c.image_ids)} images: ids {', '.join(map(str, c.image_ids[:8]))}"
            + (" ..." if len(c.image_ids) > 8 else "")
            + (f" (up to {c.distance} bits apart)" if c.kind == "near" else "")
            + (f" (similarity from {c.similarity})" if c.kind == "semantic" else "")
        )
    if len(res.clusters) > 20:
        out(f"  ... and {len(res.clusters) - 20} more (--json lists them all)")
    if a.tag:
        out(f"tagged {res.tagged} images {a.tag!r} (all but the {a.keep} of each cluster)")
    if res.fiftyone:
        f = res.fiftyone
        out(
            f"FiftyOne dataset {f['name']!r}: {f['samples']} images of {f['clusters']} clusters, "
            f"saved view {f['view']!r}; open it with: dataforge app {f['name']}"
        )
    return 0


def cmd_leakage(a: argparse.Namespace) -> int:
    from dataforge.api import leakage

    res = leakage(a.store, threshold=a.threshold, apply=a.apply, group_by=a.group_by)
    if a.json:
        print_json({"leaks": [leak.__dict__ for leak in res.leaks], "pairs": res.pairs, "moved": res.moved})
        return 0
    one, many = (
        ("duplicate cluster", "duplicate clusters")
        if a.group_by == "cluster"
        else (f"group of images sharing {a.group_by}", f"groups of images sharing {a.group_by}")
    )
    if not res.leaks:
        out(f"no {one} spans two splits")
        return 0
    out(
        f"{len(res.leaks)} {many} span splits: "
        + ", ".join(f"{pair} {n}" for pair, n in sorted(res.pairs.items()))
    )
    for leak in res.leaks[:20]:
        where = ", ".join(f"{sp}: {ids}" for sp, ids in leak.splits.items())
        out(f"  {where} -> move {leak.move['image_ids']} to {leak.move['to']}")
    if res.moved:
        out(f"moved {res.moved} images: none spans two splits now")
    else:
        out("apply those moves with --apply")
    return 1 if not res.moved else 0


def cmd_mislabels(a: argparse.Namespace) -> int:
    from dataforge.api import mislabels
    from dataforge.jsonio import write_json

    r = mislabels(
        a.store,
        a.predictions,
        split=a.split,
        where=a.where,
        min_score=a.min_score,
        loose_iou=a.loose_iou,
        method=a.method,
        kinds=a.kind,
        top=a.top,
        tag=a.tag,
        labelstudio_project=a.labelstudio,
        url=a.url,
        api_key=a.api_key,
        document_root=a.document_root,
    )
    if a.out:
        write_json(Path(a.out), r.to_dict())
    if a.json:
        print_json(r.to_dict())
        return 0
    counts = ", ".join(f"{n} {k}" for k, n in r.counts.items()) or "none"
    skipped = "; skipped: " + ", ".join(f"{n} {why}" for why, n in r.skipped.items()) if r.skipped else ""
    out(f"{r.task}: {r.images} images looked at, label-error candidates: {counts}{skipped}")
    for c in r.candidates[:25]:
        what = {
            "wrong_class": f"labelled {c.given!r}, the model says {c.suggested!r} (IoU {c.iou})",
            "missing_box": f"unlabelled {c.suggested!r} at {c.predicted_bbox}",
            "loose_box": f"{c.given!r} box {c.bbox}, the model's {c.predicted_bbox} (IoU {c.iou})",
            "label": f"labelled {c.given!r}, the model says {c.suggested!r}",
        }[c.kind]
        out(f"  {c.score:.3f}  {c.kind:11s} image {c.image_id} ({c.file_name}): {what}")
    if len(r.candidates) > 25:
        out(f"  ... and {len(r.candidates) - 25} more (--json or --out FILE lists them all)")
    if a.tag:
        out(
            f"tagged {r.tagged} images {a.tag!r} and {a.tag}:<kind>; list them with --where \"tag == '{a.tag}'\""
        )
    if a.labelstudio:
        out(f"pushed {r.pushed} images to Label Studio project {a.labelstudio!r} for review")
    return 0


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
    sp.add_argument(
        "--embeddings",
        metavar="RUN",
        help="also join images a trained classifier's run finds alike (semantic near duplicates: "
        "mirrored, re-framed); nearest neighbours through a faiss index",
    )
    sp.add_argument(
        "--similarity", type=float, default=0.95, help="--embeddings: cosine similarity from (default 0.95)"
    )
    sp.add_argument("--device", default="auto", help="--embeddings: cpu, cuda, cuda:N or auto")
    sp.add_argument(
        "--fiftyone", metavar="NAME", help="write the clusters to a FiftyOne dataset (view 'duplicates')"
    )
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
    sp.add_argument(
        "--group-by",
        default="cluster",
        metavar="cluster|FIELD",
        help="what must not span splits: duplicate clusters (default) or images sharing a field's "
        "value, e.g. source.video",
    )
    sp.add_argument("--json", action="store_true")
    sp = add(
        "mislabels",
        cmd_mislabels,
        "label-error candidates from a model's predictions: wrong class, missing or loose box, wrong image label",
        "Detection: a ground truth the model confidently calls another class (wrong_class), a "
        "confident prediction on no labelled object (missing_box), a box the model's overlaps by "
        "IoU 0.1 to --loose-iou (loose_box). Classification: confident learning through cleanlab "
        "(needs every class's score, out-of-sample: predict on images the model did not train on). "
        "Ranked by the model's confidence; review the top of the list.",
    )
    sp.add_argument("store")
    sp.add_argument("--predictions", required=True, help="predictions file (dataforge predict's output)")
    sp.add_argument("--split", help="only this split's images")
    sp.add_argument("--where", help=WHERE_HELP)
    sp.add_argument(
        "--min-score", type=float, default=0.5, help="detection: a prediction counts from this score (0.5)"
    )
    sp.add_argument(
        "--loose-iou", type=float, default=0.5, help="detection: a box is loose below this IoU (0.5)"
    )
    sp.add_argument(
        "--method",
        default="prune_by_noise_rate",
        # the lists are dataforge.mislabels' METHODS and KINDS, written out: importing that module
        # (numpy) would slow every command's start
        choices=[
            "prune_by_noise_rate",
            "prune_by_class",
            "both",
            "confident_learning",
            "predicted_neq_given",
            "low_normalized_margin",
            "low_self_confidence",
        ],
        help="classification: cleanlab's filter_by (default prune_by_noise_rate; "
        "predicted_neq_given finds more, less precisely)",
    )
    sp.add_argument(
        "--kind",
        action="append",
        choices=["wrong_class", "missing_box", "loose_box", "label"],
        help="only these kinds (repeatable)",
    )
    sp.add_argument("--top", type=int, help="keep the N most likely candidates")
    sp.add_argument("--tag", help="tag the candidates' images TAG and TAG:<kind>")
    sp.add_argument("--labelstudio", metavar="PROJECT", help="push the candidates' images to this project")
    sp.add_argument("--url", help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    sp.add_argument("--api-key", help="Label Studio API key (default: $LABEL_STUDIO_API_KEY)")
    sp.add_argument(
        "--document-root",
        help="Label Studio's local-files root (default: $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)",
    )
    sp.add_argument("--out", help="write the ranked list as JSON to this file")
    sp.add_argument("--json", action="store_true")
