"""Benchmark: one training epoch through dataforge's trainer versus a hand-written torchvision loop.

Same data (scikit-learn's digits as class folders, 1,258 training images), same model (resnet18,
10 classes, from scratch), same input size (64x64), batch size (64), optimizer (SGD, momentum .9)
and DataLoader workers (0). The hand-written loop is the minimum: a Dataset that reads the PNG,
resizes and normalizes; forward, cross-entropy, backward, step. dataforge's run also builds the
run directory, logs to TensorBoard and writes last.pt/best.pt (validation is off in both).

Also measured: the data loader alone (images/s) and the model alone on an in-memory batch
(images/s), so the overhead can be placed. Target (issue 6): framework overhead < 10%. Usage:

    .venv/bin/python benchmarks/train.py [--repeats 3]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
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
