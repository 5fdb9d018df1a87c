"""``dataforge augment``: a new augmented store, or a preview."""

from __future__ import annotations

import argparse

from dataforge.cli.args import WHERE_HELP, Commands
from dataforge.cli.render import err, out, print_json


def cmd_augment(a: argparse.Namespace) -> int:
    from dataforge import api

    if a.preview is not None:
        path = api.preview(a.store, a.pipeline, a.out, n=a.preview, seed=a.seed, where=a.where, split=a.split)
        out(f"preview of {a.preview} images (original | augmented copy 0) written to {path}")
        return 0
    from dataforge.progress import ProgressBar

    bar = ProgressBar("augment", unit="img", enabled=not a.json and not a.quiet)
    try:
        res = api.augment(
            a.store,
            a.pipeline,
            a.out,
            seed=a.seed,
            copies=a.copies,
            where=a.where,
            split=a.split,
            workers=a.workers,
            scheduler=a.scheduler,
            device=a.device,
            backend=a.backend,
            on_error=a.on_error,
            chunk_size=a.chunk_size,
            progress=bar.set_done,
            on_dashboard=lambda link: err(f"dask dashboard: {link}"),
        )
    finally:
        bar.close()
    if a.json:
        print_json(res.as_dict())
        return 0
    if res.already_done:
        out(f"{res.out}: this job is already complete ({res.images} images); nothing to do")
        return 0
    c = res.counts
    resumed = f", {res.resumed_units} done by an earlier run" if res.resumed_units else ""
    out(
        f"augmented {res.source_images} images x {res.copies} copies -> {res.images} images in {res.out} "
        f"({res.seconds:.1f} s, {res.images / max(res.seconds, 1e-9):.0f} img/s, "
        f"{res.workers} workers, {res.scheduler}{resumed})"
    )
    out(
        f"boxes: {c['boxes_in']} in, {c['boxes_out']} out, {c['boxes_clipped']} clipped by crops/rotations, "
        f"{c['boxes_dropped']} dropped by the box rules"
    )
    if "masks_out" in c or "keypoints_out" in c:
        parts = []
        if "masks_out" in c:
            parts.append(
                f"{c['masks_out']} masks (instance and semantic, moved with their images, written as RLE)"
            )
        if "keypoints_out" in c:
            parts.append(f"{c['keypoints_out']} labelled keypoints (flips swap left and right)")
        out("labels: " + ", ".join(parts))
    if res.skipped:
        out(f"skipped {len(res.skipped)} source images; see {res.report}")
    for w in res.warnings:
        err(f"warning: {w}")
    return 0


def add_augment(add: Commands) -> None:
    sp = add(
        "augment",
        cmd_augment,
        "augment a store into a new store (dask-parallel; boxes, masks and keypoints move with the pixels)",
        "Augment every selected image COPIES times with a pipeline file into a new store. Boxes, "
        "instance and semantic masks and keypoints are transformed with the images (flips swap left "
        "and right keypoints); each new image records its source, copy index, pipeline hash and "
        "the exact parameters drawn. Output depends only on (seed, source image, copy), never on the "
        "workers or chunking. Re-run the same command after a kill to finish the remaining work.\n\n"
        "examples:\n"
        "  dataforge augment ./pets --pipeline examples/pipelines/flip-crop-jitter.yaml --copies 4 --out ./pets-aug\n"
        "  dataforge augment ./pets --pipeline p.yaml --out ./pets-aug --workers 8\n"
        "  dataforge augment ./pets --pipeline p.yaml --out ./pets-aug --scheduler tcp://10.0.0.5:8786\n"
        "  dataforge augment ./pets --pipeline p.yaml --out ./pets-aug --device cuda\n"
        "  dataforge augment ./pets --pipeline p.yaml --preview 16 --out preview.png",
    )
    sp.add_argument("store")
    sp.add_argument(
        "--pipeline", required=True, help="pipeline file (YAML or JSON; schemas/pipeline.schema.json)"
    )
    sp.add_argument("--out", required=True, help="new store directory (or the PNG file with --preview)")
    sp.add_argument(
        "--copies", type=int, help="augmented copies per image (default: the pipeline's `copies`)"
    )
    sp.add_argument("--seed", type=int, help="override the pipeline's seed")
    sp.add_argument("--where", help="only augment the images this filter matches; " + WHERE_HELP)
    sp.add_argument("--split", help="only augment this split (e.g. train)")
    sp.add_argument("--workers", type=int, help="local worker processes (default: the number of cores)")
    sp.add_argument(
        "--scheduler",
        default="processes",
        metavar="processes|threads|sync|ADDRESS",
        help="local dask processes (default), threads, sync (in-process, for debugging), "
        "or the address of a dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    sp.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto (default): a worker with a CUDA GPU uses it (torchvision), others the CPU; "
        "cuda: GPU only, tasks go only to workers with a GPU resource; cpu: never the GPU",
    )
    sp.add_argument(
        "--backend",
        choices=["auto", "opencv", "torchvision"],
        default="auto",
        help="auto (default): OpenCV kernels on CPU, torchvision v2 on CUDA; torchvision also runs on CPU tensors (slow; for checks)",
    )
    sp.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="fail: stop at a bad source image (default); skip: skip it and report it",
    )
    sp.add_argument("--chunk-size", type=int, help="images per dask task (default: 4-64, by job size)")
    sp.add_argument(
        "--preview", type=int, metavar="N", help="write a PNG grid of N originals vs augmented and exit"
    )
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--json", action="store_true", help="print the job summary as JSON")
