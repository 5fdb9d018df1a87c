"""Store commands: import, info, tag, split, validate, export, formats, history."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dataforge.cli.args import WHERE_HELP, Commands, format_options, parse_ids
from dataforge.cli.render import err, out, print_json, table


def cmd_import(a: argparse.Namespace) -> int:
    from dataforge.api import import_dataset

    res = import_dataset(
        **format_options(a.option),
        source=a.source,
        store=a.store,
        format=a.format,
        images=a.images,
        on_error=a.on_error,
        split=a.split,
        tags=a.tag or [],
        link=a.link,
        categories=a.categories,
        exif=a.exif,
        strict=a.strict,
    )
    how = " (detected)" if a.format == "auto" else ""
    out(
        f"imported {res.images} images, {res.annotations} annotations into {res.store} [format: {res.format}{how}]"
    )
    from dataforge.formats.accounting import summary

    out(f"  {summary(res.format, res)}")
    if res.new_categories:
        out(f"new categories: {', '.join(res.new_categories)}")
    changed = {k: v for k, v in res.id_changes.items() if v}
    if changed:
        out(
            "ids re-assigned (taken in the store, or annotation id 0): "
            + ", ".join(f"{v} {k}" for k, v in changed.items())
        )
    for w in res.warnings[:5]:
        err(f"warning: {w}")
    if len(res.warnings) > 5:
        err(f"warning: ... and {len(res.warnings) - 5} more (see the report)")
    if res.skipped:
        err(f"skipped {len(res.skipped)} items:")
        for reason, n in sorted(res.skipped_by_reason.items()):
            err(f"  {n:6d}  {reason}")
    if res.report:
        out(f"report: {res.report}")
    return 0


def add_import(add: Commands) -> None:
    sp = add(
        "import",
        cmd_import,
        "import a dataset into a store (new or existing)",
        "Import a dataset into a store. All-or-nothing: on any problem the store is left exactly as it "
        "was, unless --on-error skip, which skips bad items and writes a report of each.",
    )
    sp.add_argument("source", help="annotation file or dataset directory")
    sp.add_argument(
        "--store", required=True, help="store directory (created if missing; merged into if it exists)"
    )
    sp.add_argument(
        "--format", default="auto", help="format plugin name (see `dataforge formats`), default: auto"
    )
    sp.add_argument(
        "--images", help="folder that the file names in SOURCE are relative to (default: guessed)"
    )
    sp.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="fail: stop at the first bad item (default); skip: skip bad items and report them",
    )
    sp.add_argument("--split", help="put every imported image in this split (e.g. train)")
    sp.add_argument(
        "--tag", action="append", metavar="TAG", help="add this tag to every imported image (repeatable)"
    )
    sp.add_argument("--link", action="store_true", help="hard-link images into the store instead of copying")
    sp.add_argument(
        "--strict",
        action="store_true",
        help="refuse to import when the source holds what dataforge would drop or approximate",
    )
    sp.add_argument(
        "--exif",
        choices=["keep", "rotate"],
        default="keep",
        help="keep (default): pixels and labels as the files store them, EXIF orientation recorded; "
        "rotate: turn images upright as viewers show them, and their labels with them",
    )
    sp.add_argument(
        "--categories",
        metavar="CATEGORIES_JSON",
        help="the categories.json an export wrote: its categories get their store ids back (round trips)",
    )
    sp.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="format option, e.g. --option coordinates=devkit (VOC); see the format's docs",
    )


def cmd_info(a: argparse.Namespace) -> int:
    from dataforge.api import info

    if a.image is not None:
        from dataforge.api import image_lineage

        print_json(image_lineage(a.store, a.image))
        return 0
    d = info(a.store, where=a.where)
    if a.balance:
        from dataforge.info import balance, balance_plot

        bal = balance(d)
        if a.plot:
            balance_plot(bal, a.plot)
        if a.json:
            print_json(bal)
            return 0
        splits = bal["splits"]
        out(
            table(
                [
                    (
                        r["name"],
                        r["instances"],
                        f"{100 * r['share']:.1f}%",
                        r["images"],
                        *[r["images_by_split"].get(s, 0) for s in splits],
                    )
                    for r in bal["categories"]
                ],
                ["category", "instances", "share", "images", *[f"images:{s}" for s in splits]],
            )
        )
        ratio = bal["imbalance_ratio"]
        out(f"imbalance ratio (commonest / rarest instances): {ratio:.2f}" if ratio else "no instances")
        if bal["absent"]:
            out(f"categories without instances: {', '.join(bal['absent'])}")
        if a.plot:
            out(f"plot: {a.plot}")
        return 0
    if a.json:
        print_json(d)
        return 0
    out(f"store {d['store']} (revision {d['revision']})" + (f", where {d['where']}" if d["where"] else ""))
    out(
        f"  {d['images']} images ({d['images_without_annotations']} without annotations), "
        f"{d['annotations']} boxes ({d['crowd_annotations']} crowd), {len(d['categories'])} categories"
    )
    m = d["masks"]
    if any(m.values()):
        out(
            f"  masks: {m['polygons']} polygon, {m['rle']} RLE instance masks, {m['semantic']} semantic regions"
        )
    k = d["keypoints"]
    if k["annotations"] or k["categories"]:
        cats = ", ".join(
            f"{n} ({c['points']} points, {c['skeleton_edges']} skeleton edges)"
            for n, c in k["categories"].items()
        )
        out(f"  keypoints: {k['annotations']} annotations, {k['labelled_points']} labelled points; {cats}")
    if d["augmented_images"]:
        out(
            f"  {d['augmented_images']} augmented images (each image's lineage: dataforge info STORE --image ID)"
        )
    aug = d.get("augmentation")
    if aug:
        c = aug["counts"]
        out(
            f"  made by dataforge augment from {aug['source_store']} (revision {aug['source_revision']}): "
            f"pipeline {aug['pipeline_sha256'][:12]} ({', '.join(aug['steps'])}), seed {aug['seed']}, "
            f"{aug['copies']} copies; boxes {c.get('boxes_in')} in, {c.get('boxes_out')} out, "
            f"{c.get('boxes_clipped')} clipped, {c.get('boxes_dropped')} dropped"
        )
    out("\nsplits")
    out(table([(s, v["images"], v["boxes"]) for s, v in d["splits"].items()], ["split", "images", "boxes"]))
    out("\ncategories")
    splits = list(d["splits"])
    labelled = any(c["labelled_images"] for c in d["categories"])
    rows = [
        (
            c["name"],
            c["id"],
            c["images"],
            c["boxes"],
            *[c["boxes_by_split"].get(s, 0) for s in splits],
            *([c["labelled_images"]] if labelled else []),
        )
        for c in d["categories"]
    ]
    header = ["category", "id", "images", "boxes", *[f"boxes:{s}" for s in splits]]
    out(table(rows, header + (["labelled images"] if labelled else [])))
    bw, bh = d["box_sizes"]["width"], d["box_sizes"]["height"]
    if bw:
        out("\nbox sizes (pixels)")
        out(
            table(
                [(k, f"{bw[k]:.1f}", f"{bh[k]:.1f}") for k in ("min", "p5", "median", "p95", "max")],
                ["stat", "width", "height"],
            )
        )
        b = d["box_sizes"]["coco_area_buckets"]
        out(f"  COCO area buckets: small {b['small']}, medium {b['medium']}, large {b['large']}")
    if d["tags"]:
        out("\ntags")
        out(table(list(d["tags"].items()), ["tag", "images"]))
    return 0


def add_info(add: Commands) -> None:
    sp = add("info", cmd_info, "counts per split and category, box sizes, tags")
    sp.add_argument("store")
    sp.add_argument("--image", type=int, metavar="ID", help="print one image's record and lineage as JSON")
    sp.add_argument(
        "--balance", action="store_true", help="class balance: instances, images per split, imbalance ratio"
    )
    sp.add_argument("--plot", metavar="PNG", help="with --balance: write a bar chart of it")
    sp.add_argument("--where", help=WHERE_HELP)
    sp.add_argument("--json", action="store_true", help="print JSON")


def cmd_tag(a: argparse.Namespace) -> int:
    from dataforge.api import tag_images

    ids = parse_ids(a.ids) if a.ids else None
    res = tag_images(a.store, add=a.add or [], remove=a.remove or [], where=a.where, ids=ids)
    out(f"{res.matched} images matched, {res.changed} changed")
    return 0


def add_tag(add: Commands) -> None:
    sp = add(
        "tag",
        cmd_tag,
        "add or remove tags on the images a filter matches",
        "Add or remove tags on images. Without --where/--ids every image matches.\n\n"
        "examples:\n  dataforge tag ./pets --add needs-review --where \"category == 'cat' and boxes > 3\"\n"
        "  dataforge tag ./pets --remove needs-review --ids 4,8,15",
    )
    sp.add_argument("store")
    sp.add_argument("--add", action="append", metavar="TAG", help="tag to add (repeatable)")
    sp.add_argument("--remove", action="append", metavar="TAG", help="tag to remove (repeatable)")
    sp.add_argument("--where", help=WHERE_HELP)
    sp.add_argument("--ids", help="comma-separated image ids")


def cmd_split(a: argparse.Namespace) -> int:
    from dataforge.api import split_store
    from dataforge.splits import parse_ratios

    res = split_store(
        a.store,
        ratios=parse_ratios(a.ratios),
        seed=a.seed,
        stratify=a.stratify,
        where=a.where,
        group_by=a.group_by,
    )
    names = list(res.images)
    grouped = f", groups by {a.group_by} kept whole" if a.group_by else ""
    out(f"{'stratified' if a.stratify else 'random'} split, seed {a.seed}{grouped}")
    out(
        table(
            [("(images)", *[res.images[n] for n in names])]
            + [(c, *[v[n] for n in names]) for c, v in res.boxes_by_category.items()],
            ["", *names],
        )
    )
    if res.deviation:
        worst = max(res.deviation.items(), key=lambda kv: kv[1])
        out(
            "largest gap between a split's share of a category's images and its ratio: "
            + ", ".join(f"{c} {d:.3f}" for c, d in sorted(res.deviation.items()))
            + f" (worst: {worst[0]})"
        )
    return 0


def add_split(add: Commands) -> None:
    sp = add(
        "split",
        cmd_split,
        "assign train/val/test splits by ratio",
        "Assign splits by ratio with a seed. --stratify keeps every category's share close to the ratios "
        "in each split, also for multi-label detection images (iterative stratification).",
    )
    sp.add_argument("store")
    sp.add_argument(
        "--ratios", default="train=0.8,val=0.1,test=0.1", help="NAME=FRACTION,... (default %(default)s)"
    )
    sp.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    sp.add_argument("--stratify", action="store_true", help="stratify by category")
    sp.add_argument(
        "--group-by",
        metavar="cluster|FIELD",
        help="keep groups whole: duplicate clusters (cluster) or images sharing a field's value "
        "(e.g. source.video: frames of one video stay together)",
    )
    sp.add_argument("--where", help="only split the images this filter matches; " + WHERE_HELP)


def cmd_validate(a: argparse.Namespace) -> int:
    from dataforge.api import validate

    rep = validate(a.store, check_files=not a.no_files)
    if a.json:
        print_json(rep.to_dict())
    else:
        for f in rep.findings[: a.max]:
            out(f"{f.severity}: [{f.code}] {f.message}")
        if len(rep.findings) > a.max:
            out(f"... {len(rep.findings) - a.max} more findings (use --json for all)")
        out(
            f"{rep.images} images, {rep.annotations} annotations: {len(rep.errors)} errors, "
            f"{len(rep.warnings)} warnings"
        )
    return 0 if rep.ok else 1


def add_validate(add: Commands) -> None:
    sp = add("validate", cmd_validate, "check a store: errors (exit 1) and warnings")
    sp.add_argument("store")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--no-files", action="store_true", help="skip reading the image files")
    sp.add_argument(
        "--max", type=int, default=50, help="print at most this many findings (default %(default)s)"
    )


def cmd_export(a: argparse.Namespace) -> int:
    from dataforge.api import export_dataset

    opts: dict[str, Any] = {}
    if a.category_ids is not None:
        opts["category_ids"] = a.category_ids
    if a.link:
        opts["link"] = True
    opts.update(format_options(a.option))
    res = export_dataset(
        a.store, format=a.format, out=a.out, where=a.where, split=a.split, strict=a.strict, **opts
    )
    from dataforge.formats.accounting import summary

    out(f"exported {res.images} images, {res.annotations} annotations to {res.out} ({a.format})")
    out(f"  {summary(a.format, res)}")
    for note in res.notes:
        out(f"  {note}")
    out(f"  category table: {res.out / 'categories.json'} (import back with --categories to keep the ids)")
    for what, n in res.dropped.items():
        err(f"warning: {n} {what} could not be written in this format and were dropped")
    return 0


def add_export(add: Commands) -> None:
    sp = add("export", cmd_export, "export a store (or part of it) to another format")
    sp.add_argument("store")
    sp.add_argument("--format", required=True, help="format plugin name (see `dataforge formats`)")
    sp.add_argument("--out", required=True, help="output directory (must be new or empty)")
    sp.add_argument(
        "--category-ids",
        choices=["keep", "contiguous-from-1", "contiguous-from-0"],
        help="COCO: how category ids are numbered in the output (default keep)",
    )
    sp.add_argument("--where", help=WHERE_HELP)
    sp.add_argument("--split", help="export only this split")
    sp.add_argument("--link", action="store_true", help="hard-link images instead of copying")
    sp.add_argument(
        "--strict",
        action="store_true",
        help="refuse to drop or approximate anything (masks, keypoints, labels the format cannot hold)",
    )
    sp.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="format option, e.g. --option coordinates=devkit (VOC)",
    )


def cmd_formats(a: argparse.Namespace) -> int:
    from dataforge.api import formats

    header = ["format", "import", "export", "from", "description"]
    rows = [
        (
            f.name,
            "yes" if f.can_import else "-",
            "yes" if f.can_export else "-",
            f.distribution,
            f.description,
        )
        for f in formats()
    ]
    if a.json:
        keys = ["name", "import", "export", "distribution", "description"]
        print_json([dict(zip(keys, r, strict=True)) for r in rows])
    else:
        out(table(rows, header))
    return 0


def add_formats(add: Commands) -> None:
    sp = add("formats", cmd_formats, "list the dataset format plugins and what each can do")
    sp.add_argument("--json", action="store_true", help="print JSON")


def cmd_history(a: argparse.Namespace) -> int:
    from dataforge.api import history

    entries = history(a.store, last=a.n)
    if a.json:
        print_json([e.entry for e in entries])
        return 0
    for e in entries:
        revision = "?" if e.revision is None else e.revision
        out(f"{e.time}  r{revision:<4} {e.op:8s} {e.user}  {json.dumps(e.details, default=str)}")
    return 0


def add_history(add: Commands) -> None:
    sp = add("history", cmd_history, "show the operations that changed a store")
    sp.add_argument("store")
    sp.add_argument("-n", type=int, default=20, help="last N entries (default %(default)s)")
    sp.add_argument("--json", action="store_true", help="print JSON")
