"""Benchmark: one training epoch through dataforge's trainer versus a hand-written torchvision loop.

Same data (scikit-learn's digits as class folders, 1,258 training images), same model (resnet18,
10 classes, from scratch), same input size (64x64), batch size (64), optimizer (SGD, momentum .9)
and DataLoader workers (0). The hand-written loop is the minimum: a Dataset that reads the PNG,
resizes and normalizes; forward, cross-entropy, backward, step. dataforge's run also builds the
run directory, logs to TensorBoard and writes last.pt/best.pt (validation is off in both).

Also measured: the data loader alone (images/s) and the model alone on an in-memory batch
(images/s), so the overhead can be placed. Target (issue 6): framework overhead < 10%.

``--case regressor``: the point regressor (ResNet-18, soft-argmax head, the plugin's own network)
on 600 synthetic faces at 64x64, L1 in input pixels, AdamW, against a hand-written loop that reads
the JPEG, resizes, normalizes and regresses the points. ``--case segmenter``: LR-ASPP from scratch
on 400 shape images made a semantic store, 64x64, cross-entropy with void ignored, against a loop
that decodes the RLE regions into a class map itself. Usage:

    .venv/bin/python benchmarks/train.py [--repeats 3] [--case classifier|regressor|segmenter]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.api import import_dataset
from dataforge.store import Store
from dataforge.synthetic import make_digits_folders

SIZE, BATCH, LR = 64, 64, 0.05


def hand_loop(store: Store) -> float:
    import cv2
    import torch
    import torch.nn.functional as F
    import torchvision

    names = {c.id: i for i, c in enumerate(sorted(store.categories, key=lambda c: c.id))}
    items = [
        (str(store.images_dir / i["file_name"]), names[i["labels"][0]])
        for i in store.select(None, split="train")
    ]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    class DS(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(items)

        def __getitem__(self, i: int) -> tuple[Any, int]:
            path, label = items[i]
            img = cv2.resize(
                cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1], (SIZE, SIZE), interpolation=cv2.INTER_AREA
            )
            t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255
            return (t - mean) / std, label

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(DS(), batch_size=BATCH, shuffle=True)
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def dataforge_epoch(store: Path, out: Path) -> float:
    from dataforge.training.run import train

    t0 = time.perf_counter()
    train(
        store,
        trainer="torchvision-classifier",
        out=out,
        sets=[
            f"image_size={SIZE}",
            "epochs=1",
            f"batch_size={BATCH}",
            f"base_batch_size={BATCH}",
            f"lr={LR}",
            "schedule=constant",
            "val_split=null",
            "log_images=0",
        ],
    )
    return time.perf_counter() - t0


def loader_only(store: Store) -> float:
    import torch

    from dataforge.training.data import StoreDataset, category_table, collate_classification, samples

    ds = StoreDataset(
        samples(store, "classification", "train", category_table(store)), "classification", resize_to=SIZE
    )
    loader = torch.utils.data.DataLoader(
        ds, batch_size=BATCH, shuffle=True, collate_fn=collate_classification
    )  # type: ignore[arg-type]
    t0 = time.perf_counter()
    n = sum(len(x) for x, _ in loader)
    return n / (time.perf_counter() - t0)


def model_only() -> float:
    import torch
    import torch.nn.functional as F
    import torchvision

    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    x, y = torch.randn(BATCH, 3, SIZE, SIZE), torch.randint(0, 10, (BATCH,))
    for _ in range(2):  # warm up
        F.cross_entropy(model(x), y).backward()
    steps = 8
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * BATCH / (time.perf_counter() - t0)


def _normalize(t: Any) -> Any:
    import torch

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (t - mean) / std


def _rgb(path: str, size: int) -> Any:
    import cv2
    import torch

    img = cv2.resize(
        cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1], (size, size), interpolation=cv2.INTER_AREA
    )
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255


def hand_regressor(store: Store, batch: int) -> float:
    import torch
    import torch.nn.functional as F
    from dataforge_tv_regressor import RegressorConfig, _build

    items = []
    for img in store.select(None, split="train"):
        (a,) = store.index.anns_by_image[img["id"]]
        pts = np.asarray(a["keypoints"], dtype=np.float32).reshape(-1, 3)[:, :2] / (
            img["width"],
            img["height"],
        )
        items.append((str(store.images_dir / img["file_name"]), torch.from_numpy(pts)))

    class DS(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(items)

        def __getitem__(self, i: int) -> tuple[Any, Any]:
            return _normalize(_rgb(items[i][0], SIZE)), items[i][1]

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = _build(RegressorConfig(image_size=SIZE), 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for x, y in torch.utils.data.DataLoader(DS(), batch_size=batch, shuffle=True):
        loss = F.l1_loss(model(x) * SIZE, y * SIZE)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def hand_segmenter(store: Store, batch: int) -> float:
    import cv2
    import torch
    import torch.nn.functional as F
    import torchvision

    from dataforge.masks import decode

    index = {c.id: i for i, c in enumerate(sorted(store.categories, key=lambda c: c.id))}
    items = [
        (
            str(store.images_dir / img["file_name"]),
            img["width"],
            img["height"],
            store.index.anns_by_image[img["id"]],
        )
        for img in store.select(None, split="train")
    ]

    class DS(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(items)

        def __getitem__(self, i: int) -> tuple[Any, Any]:
            path, w, h, anns = items[i]
            target = np.full((h, w), 255, np.uint8)
            for a in anns:
                target[decode(a["segmentation"], h, w)] = index[a["category_id"]]
            target = cv2.resize(target, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST_EXACT)
            return _normalize(_rgb(path, SIZE)), torch.from_numpy(target.astype(np.int64))

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = torchvision.models.get_model(
        "lraspp_mobilenet_v3_large", weights=None, weights_backbone=None, num_classes=len(index)
    )
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=1e-4)
    model.train()
    for x, y in torch.utils.data.DataLoader(DS(), batch_size=batch, shuffle=True):
        loss = F.cross_entropy(model(x)["out"], y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def plugin_epoch(store: Path, out: Path, trainer: str, batch: int, extra: list[str]) -> float:
    from dataforge.training.run import train

    t0 = time.perf_counter()
    train(
        store,
        trainer=trainer,
        out=out,
        sets=[
            f"image_size={SIZE}",
            "epochs=1",
            f"batch_size={batch}",
            f"base_batch_size={batch}",
            "schedule=constant",
            "val_split=null",
            "log_images=0",
            *extra,
        ],
    )
    return time.perf_counter() - t0


def other_case(case: str, repeats: int) -> None:
    """The regressor or the segmenter against its hand-written loop, interleaved."""
    import torch

    from dataforge.api import export_dataset, split_store
    from dataforge.synthetic import make_faces_dataset, make_shapes_dataset

    root = Path(tempfile.mkdtemp(prefix=f"dataforge-bench-{case}-"))
    batch = 32 if case == "regressor" else 16
    if case == "regressor":
        make_faces_dataset(root / "src", n_images=600, seed=1)
        import_dataset(source=root / "src" / "instances.json", store=root / "store")
        hand_fn, trainer, extra = hand_regressor, "torchvision-regressor", ["lr=0.001"]
    else:
        make_shapes_dataset(root / "src", n_images=400, size_wh=(96, 72), max_objects=3, seed=5, masks=True)
        import_dataset(source=root / "src" / "instances.json", store=root / "instances")
        export_dataset(root / "instances", format="masks", out=root / "maps")
        import_dataset(source=root / "maps", store=root / "store")
        hand_fn, trainer, extra = hand_segmenter, "torchvision-segmenter", ["optimizer=adamw", "lr=0.01"]
    split_store(root / "store", ratios={"train": 1.0}, seed=0)
    store = Store.open(root / "store")
    n = len(store.select(None, split="train"))
    print(
        f"{case}: {n} training images at {SIZE}x{SIZE}, batch {batch}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    hand, ours = [], []
    for r in range(repeats):
        hand.append(hand_fn(store, batch))
        ours.append(plugin_epoch(root / "store", root / f"run{r}", trainer, batch, extra))
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"\n{'one epoch':40s} {'median s':>9s} {'img/s':>7s}   runs")
    print(f"{'hand-written loop':40s} {h:9.2f} {n / h:7.1f}   {', '.join(f'{x:.2f}' for x in hand)}")
    print(
        f"{'dataforge train (' + trainer + ')':40s} {o:9.2f} {n / o:7.1f}   {', '.join(f'{x:.2f}' for x in ours)}"
    )
    print(
        f"\nframework overhead: {100 * (o / h - 1):+.1f}% (target < 10%)  {'PASS' if o / h < 1.10 else 'FAIL'}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--case", choices=["classifier", "regressor", "segmenter"], default="classifier")
    a = p.parse_args()
    if a.case != "classifier":
        other_case(a.case, a.repeats)
        return
    import torch

    root = Path(tempfile.mkdtemp(prefix="dataforge-bench-train-"))
    make_digits_folders(root / "folders")
    import_dataset(source=root / "folders", store=root / "store", format="folders")
    store = Store.open(root / "store")
    n = len(store.select(None, split="train"))
    print(
        f"digits: {n} training images, resnet18 at {SIZE}x{SIZE}, batch {BATCH}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    hand, ours = [], []
    for r in range(a.repeats):  # interleaved, so drift hits both
        hand.append(hand_loop(store))
        ours.append(dataforge_epoch(root / "store", root / f"run{r}"))
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"\n{'one epoch':40s} {'median s':>9s} {'img/s':>7s}   runs")
    print(
        f"{'hand-written torchvision loop':40s} {h:9.2f} {n / h:7.1f}   {', '.join(f'{x:.2f}' for x in hand)}"
    )
    print(
        f"{'dataforge train (torchvision-classifier)':40s} {o:9.2f} {n / o:7.1f}   {', '.join(f'{x:.2f}' for x in ours)}"
    )
    print(
        f"\nframework overhead: {100 * (o / h - 1):+.1f}% (target < 10%)  {'PASS' if o / h < 1.10 else 'FAIL'}"
    )
    print(
        f"data loader alone: {loader_only(store):.0f} img/s; model alone (forward+backward+step): {model_only():.0f} img/s"
    )


if __name__ == "__main__":
    main()
