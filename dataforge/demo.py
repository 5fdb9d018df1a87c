"""``dataforge demo``: the whole loop on built-in sample data, in a few minutes on 2 cores.

1. make a detection dataset (synthetic shapes: the pets-mini recipe, more images) and import it;
2. split it (stratified) and check it;
3. augment the train split (4 copies, flip + crop + colour jitter, boxes transformed);
4. train a torchvision detector from scratch on originals + augmented copies;
5. predict on the test split and evaluate (COCO mAP, per-class AP, confusion; report.html).

``--task segmentation`` runs the same loop for semantic segmentation: the shapes' exact masks
exported as label maps and imported as a semantic store, augmented with their regions, an LR-ASPP
segmenter trained from scratch, its full-size predictions scored by mIoU.

``--task keypoints`` is "where's my nose?": face drawings with their eyes and nose as keypoints,
augmented (a flip swaps the eyes), a ResNet-18 point regressor trained from scratch, its points
scored by pixel error and PCK.

Works with no arguments in an empty directory; prints where everything went.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataforge.errors import UsageError

PIPELINE = """\
seed: 0
copies: 4
steps:
  - {type: hflip, p: 0.5}
  - {type: random_resized_crop, scale: [0.6, 1.0], p: 0.8}
  - {type: color_jitter, brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.03, p: 0.8}
boxes: {min_visibility: 0.4, min_area: 16}
output: {format: jpeg, quality: 92}
"""


def run_demo(
    directory: str | Path = "dataforge-demo",
    *,
    quick: bool = False,
    task: str = "detection",
    echo: Callable[[str], None] = print,
) -> dict[str, Path]:
    if task == "segmentation":
        return run_segmentation_demo(directory, quick=quick, echo=echo)
    if task == "keypoints":
        return run_keypoints_demo(directory, quick=quick, echo=echo)
    if task != "detection":
        raise UsageError(f"--task {task!r}: the demo runs detection, segmentation or keypoints")
    from dataforge.api import import_dataset, split_store
    from dataforge.synthetic import make_shapes_dataset
    from dataforge.training.run import train

    root = _empty(directory)
    t0 = time.perf_counter()
    paths = _paths(root, "detector")
    n_images = 40 if quick else 120
    echo(f"[1/5] making {n_images} synthetic images (cats, dogs, birds as shapes) and importing them")
    make_shapes_dataset(paths["source"], n_images=n_images, size_wh=(160, 120), max_objects=3, seed=11)
    import_dataset(
        source=paths["source"] / "instances.json",
        store=paths["store"],
        format="coco",
        images=paths["source"] / "images",
    )

    echo("[2/5] splitting train/val/test = 0.7/0.15/0.15 (stratified by category)")
    split_store(paths["store"], ratios={"train": 0.7, "val": 0.15, "test": 0.15}, seed=0, stratify=True)

    echo("[3/5] augmenting the train split: 4 copies per image, boxes transformed")
    aug = _augment_train(paths, PIPELINE)
    echo(f"      {aug.images} augmented images ({aug.counts['boxes_out']} boxes) in {paths['train_store']}")

    epochs = 1 if quick else 5
    echo(
        f"[4/5] training fasterrcnn_mobilenet_v3_large_320_fpn from scratch, {epochs} epoch{'s' * (epochs != 1)} (CPU: a few minutes)"
    )
    res = train(
        paths["train_store"],
        trainer="torchvision-detector",
        out=paths["run"],
        sets=[
            f"epochs={epochs}",
            "batch_size=8",
            "base_batch_size=8",
            "lr=0.02",
            "warmup_epochs=1",
            "min_size=160",
            "max_size=160",
            "rois_per_image=32",  # the box head is most of a CPU step; 32 proposals an image train as well
            "log_images=2",
        ],
    )
    echo(
        f"      best val mAP@0.5 {res.best_metric or 0:.3f}; curve: "
        + ", ".join(f"{h.get('val_map50', 0):.3f}" for h in res.history)
    )

    echo("[5/5] predicting on the test split and evaluating")
    stats = _predict_and_evaluate(paths)["detection"]["coco_stats"]
    echo(f"      test mAP {stats[0]:.3f}, mAP@0.5 {stats[1]:.3f}")
    if quick:
        echo(
            "      (--quick trains one epoch to check the loop runs: expect about 0; the full demo reaches ~0.6 mAP@0.5)"
        )
    _where(paths, t0, echo)
    echo(
        f"\nnext: dataforge info {paths['store']}   |   tensorboard --logdir {paths['run'].parent}   |   dataforge app {paths['store']}"
    )
    return paths


def run_segmentation_demo(
    directory: str | Path, *, quick: bool = False, echo: Callable[[str], None] = print
) -> dict[str, Path]:
    from dataforge.api import export_dataset, import_dataset, split_store
    from dataforge.synthetic import make_shapes_dataset
    from dataforge.training.run import train

    root = _empty(directory)
    t0 = time.perf_counter()
    paths = {**_paths(root, "segmenter"), "instances": root / "instances", "label_maps": root / "label-maps"}
    n_images = 40 if quick else 120
    echo(f"[1/5] making {n_images} synthetic images with exact masks; label maps out, a semantic store in")
    make_shapes_dataset(
        paths["source"], n_images=n_images, size_wh=(160, 120), max_objects=3, seed=11, masks=True
    )
    import_dataset(source=paths["source"] / "instances.json", store=paths["instances"], format="coco")
    export_dataset(paths["instances"], format="masks", out=paths["label_maps"])
    import_dataset(source=paths["label_maps"], store=paths["store"], format="masks")

    echo("[2/5] splitting train/val/test = 0.7/0.15/0.15")
    split_store(paths["store"], ratios={"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)

    echo("[3/5] augmenting the train split: 2 copies per image, the class regions moved with the pixels")
    aug = _augment_train(paths, PIPELINE.replace("copies: 4", "copies: 2"))
    echo(f"      {aug.images} augmented images in {paths['train_store']}")

    epochs = 1 if quick else 8
    echo(
        f"[4/5] training lraspp_mobilenet_v3_large from scratch at 64x64, {epochs} epoch{'s' * (epochs != 1)}"
    )
    res = train(
        paths["train_store"],
        trainer="torchvision-segmenter",
        out=paths["run"],
        sets=[
            f"epochs={epochs}",
            "batch_size=8",
            "base_batch_size=8",
            "optimizer=adamw",
            "lr=0.01",
            "weight_decay=0.0001",
            "image_size=64",
            "class_weights=balanced",
        ],
    )
    echo(
        f"      best val mIoU {res.best_metric or 0:.3f}; curve: "
        + ", ".join(f"{h.get('val_miou', 0):.3f}" for h in res.history)
    )

    echo("[5/5] predicting on the test split (full size) and evaluating")
    sem = _predict_and_evaluate(paths)["semantic"]
    echo(f"      test mIoU {sem['mIoU']:.3f}, pixel accuracy {sem['pixel_accuracy']:.3f}")
    if quick:
        echo("      (--quick trains one epoch to check the loop runs: expect background everywhere)")
    _where(paths, t0, echo)
    return paths


KEYPOINT_PIPELINE = """\
seed: 0
copies: 2
steps:
  - {type: hflip, p: 0.5}
  - {type: random_resized_crop, scale: [0.7, 1.0], ratio: [0.9, 1.1], p: 0.8}
  - {type: rotate, limit: 10, p: 0.5}
  - {type: color_jitter, brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.03, p: 0.8}
output: {format: jpeg, quality: 92}
"""


def run_keypoints_demo(
    directory: str | Path, *, quick: bool = False, echo: Callable[[str], None] = print
) -> dict[str, Path]:
    from dataforge.api import import_dataset, split_store
    from dataforge.synthetic import make_faces_dataset
    from dataforge.training.run import train

    root = _empty(directory)
    t0 = time.perf_counter()
    paths = _paths(root, "regressor")
    n_images = 40 if quick else 160
    echo(f"[1/5] making {n_images} face drawings with their eyes and nose as keypoints, importing them")
    make_faces_dataset(paths["source"], n_images=n_images, seed=11)
    import_dataset(source=paths["source"] / "instances.json", store=paths["store"], format="coco")

    echo("[2/5] splitting train/val/test = 0.7/0.15/0.15")
    split_store(paths["store"], ratios={"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)

    echo(
        "[3/5] augmenting the train split: 2 copies per image, points moved with the pixels (a flip swaps the eyes)"
    )
    aug = _augment_train(paths, KEYPOINT_PIPELINE)
    echo(f"      {aug.images} augmented images in {paths['train_store']}")

    epochs = 1 if quick else 12
    echo(
        f"[4/5] training a ResNet-18 point regressor (soft-argmax head) from scratch at 64x64, {epochs} epoch{'s' * (epochs != 1)}"
    )
    res = train(
        paths["train_store"],
        trainer="torchvision-regressor",
        out=paths["run"],
        sets=[f"epochs={epochs}", "batch_size=16", "image_size=64"],
    )
    echo(
        f"      best val mean error {res.best_metric or 0:.2f} px; curve: "
        + ", ".join(f"{h.get('val_mean_error_px', 0):.2f}" for h in res.history)
    )

    echo("[5/5] predicting the points of the test split and evaluating")
    r = _predict_and_evaluate(paths)["regression"]
    echo(
        f"      test mean error {r['mean_error_px']:.2f} px (median {r['median_error_px']:.2f}) on "
        f"{r['images']} images of {paths['store']}, PCK@0.05 {r['PCK@0.05']:.3f}"
    )
    if quick:
        echo("      (--quick trains one epoch to check the loop runs: expect errors near chance, ~18 px)")
    _where(paths, t0, echo)
    return paths


def _empty(directory: str | Path) -> Path:
    root = Path(directory)
    if root.exists() and any(root.iterdir()):
        raise UsageError(
            f"{root}: exists and is not empty", hint="run the demo in a new directory: dataforge demo DIR"
        )
    return root


def _paths(root: Path, model: str) -> dict[str, Path]:
    return {
        "source": root / "source",
        "store": root / "store",
        "train_store": root / "train-aug",
        "pipeline": root / "pipeline.yaml",
        "run": root / "runs" / model,
        "predictions": root / "runs" / model / "predictions-test.json",
        "evaluation": root / "evaluation",
    }


def _augment_train(paths: dict[str, Path], pipeline: str) -> Any:
    """Augment the train split into the train store, then add the original images (all splits,
    keeping them) to it: training sees originals and copies, validation the original val split."""
    from dataforge.augment import load_pipeline
    from dataforge.augment.job import augment

    paths["pipeline"].write_text(pipeline)
    aug = augment(
        paths["store"], load_pipeline(paths["pipeline"]), paths["train_store"], split="train", workers=2
    )
    _merge_originals(paths["store"], paths["train_store"])
    return aug


def _predict_and_evaluate(paths: dict[str, Path]) -> dict[str, Any]:
    """The run's predictions for the test split, evaluated (report.json and report.html)."""
    from dataforge.evaluation.run import evaluate
    from dataforge.training.run import predict

    predict([paths["run"]], paths["store"], out=paths["predictions"], split="test")
    return evaluate(paths["predictions"], store=paths["store"], split="test", out=paths["evaluation"])


def _where(paths: dict[str, Path], t0: float, echo: Callable[[str], None]) -> None:
    echo(f"\ndone in {time.perf_counter() - t0:.0f} s. Where everything went:")
    for name, p in paths.items():
        echo(f"  {name:12s} {p}")
    echo(f"  {'report':12s} {paths['evaluation'] / 'report.html'}")


def _merge_originals(store: Path, aug_store: Path) -> None:
    """Add the source store's images (all splits) to the augmented store, keeping their splits."""
    from dataforge.api import import_dataset

    tmp = aug_store.parent / ".demo-originals.json"
    from dataforge.jsonio import load_json, write_json

    data = load_json(store / "annotations.json")
    write_json(tmp, {k: data[k] for k in ("images", "annotations", "categories")})
    try:
        import_dataset(source=tmp, store=aug_store, format="coco", images=store / "images")
    finally:
        tmp.unlink(missing_ok=True)
    shutil.rmtree(aug_store / "reports", ignore_errors=True)
