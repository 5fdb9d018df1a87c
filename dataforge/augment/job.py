"""The driver of ``dataforge augment``: plan, resume, schedule chunks on dask, assemble the new store.

The output directory holds the job while it runs::

    <out>/images/                 augmented images, written by the workers
    <out>/.augment/job.json       what this job is (pipeline, source store and revision, selection)
    <out>/.augment/done/*.json    one manifest per finished chunk

Re-running the same command after a kill reads the manifests, skips the (image, copy) units they
cover, and does only the rest. When every unit is done the driver writes ``annotations.json``
(image ids in source order, then copy order, so the store is the same however the work was
split), a report under ``reports/``, and removes ``.augment/``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from dataforge.augment.pipeline import Pipeline
from dataforge.augment.worker import DONE_DIR, ChunkSpec, SourceItem, run_chunk
from dataforge.boxes import xywh_to_xyxy_floats
from dataforge.errors import StoreError, UsageError
from dataforge.jsonio import write_json
from dataforge.keypoints import flip_perms
from dataforge.runtime import usable_cores
from dataforge.store.lock import StoreLock
from dataforge.store.store import IMAGES_DIR, REPORTS_DIR, Store, empty_dataset, utc_now

JOB_DIR = ".augment"
SCHEDULERS = ("processes", "threads", "sync")

#: glibc malloc settings for worker processes: without them fresh workers page-fault on every
#: image (a quarter to a third of a job's time); distributed's own default is worse.
WORKER_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "134217728",
    "MALLOC_TRIM_THRESHOLD_": "536870912",
    "MALLOC_TOP_PAD_": "67108864",
}

ProgressFn = Callable[[int, int], None]

#: how long to wait for ``--scheduler ADDRESS`` to answer
CONNECT_TIMEOUT_S = 10.0


@dataclass
class AugmentResult:
    out: Path
    images: int
    source_images: int
    copies: int
    resumed_units: int
    counts: dict[str, int]
    skipped: list[dict[str, Any]]
    seconds: float
    scheduler: str
    workers: int
    dashboard: str | None
    report: Path | None
    already_done: bool = False
    warnings: list[str] = field(default_factory=list)
    #: where the wall time went: planning, until the first chunk ran, chunks' busy time, last chunk end
    timing: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "images": self.images,
            "source_images": self.source_images,
            "copies": self.copies,
            "resumed_units": self.resumed_units,
            **self.counts,
            "skipped": len(self.skipped),
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images / self.seconds, 1) if self.seconds > 0 else None,
            "scheduler": self.scheduler,
            "workers": self.workers,
            "dashboard": self.dashboard,
            "report": str(self.report) if self.report else None,
            "already_done": self.already_done,
            "warnings": self.warnings,
            "timing": self.timing,
        }


def _out_names(images: list[dict[str, Any]], copies: int, ext: str) -> dict[int, list[str]]:
    """``<source stem>_aug<k><ext>``, keeping sub-folders; the source suffix joins the stem when two
    sources share a stem (``a.jpg`` and ``a.png``)."""
    stems: dict[str, int] = {}
    for img in images:
        p = PurePosixPath(img["file_name"])
        stems[str(p.with_suffix(""))] = stems.get(str(p.with_suffix("")), 0) + 1
    width = max(1, len(str(copies - 1)))
    names: dict[int, list[str]] = {}
    for img in images:
        p = PurePosixPath(img["file_name"])
        stem = str(p.with_suffix(""))
        if stems[stem] > 1:
            stem = f"{stem}_{p.suffix.lstrip('.')}"
        names[int(img["id"])] = [f"{stem}_aug{k:0{width}d}{ext}" for k in range(copies)]
    return names


def _job_doc(
    source: Store, pipeline: Pipeline, copies: int, where: str | None, split: str | None
) -> dict[str, Any]:
    return {
        "pipeline": pipeline.canonical(),
        "pipeline_sha256": pipeline.digest,
        "copies": copies,
        "source_store": str(source.root.resolve()),
        "source_revision": source.revision,
        "where": where,
        "split": split,
    }


def _same_job(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("pipeline_sha256", "copies", "source_store", "source_revision", "where", "split")
    return all(a.get(k) == b.get(k) for k in keys)


def _check_outside(out: Path, source: Store) -> None:
    src = source.root.resolve()
    dst = out.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise UsageError(
            f"{out}: the output must be a new directory outside the input store {source.root} "
            "(augment never writes into its input)",
            hint="pass --out ./<name>-aug",
        )


def _prepare_out(out: Path, source: Store, job: dict[str, Any]) -> str:
    """Returns ``"new"``, ``"resume"`` or ``"done"``; refuses anything else in ``out``."""
    job_file = out / JOB_DIR / "job.json"
    if job_file.is_file():
        old = orjson.loads(job_file.read_bytes())
        if not _same_job(old, job):
            raise UsageError(
                f"{out}: holds an unfinished augment job with different settings "
                f"(pipeline {old.get('pipeline_sha256', '?')[:12]}, copies {old.get('copies')}, "
                f"source {old.get('source_store')} revision {old.get('source_revision')})",
                hint="re-run that job's command to finish it, or choose another --out",
            )
        return "resume"
    if Store.is_store(out):
        meta = Store.open(out).data.get("dataforge", {}).get("augment")
        if isinstance(meta, dict) and _same_job(meta, job):
            return "done"
        raise UsageError(
            f"{out}: already holds a store (made by a different job)",
            hint="choose a new --out directory",
        )
    if out.exists() and any(p.name != ".lock" for p in out.iterdir()):
        raise UsageError(f"{out}: exists and is not empty", hint="choose a new --out directory")
    (out / JOB_DIR / DONE_DIR).mkdir(parents=True, exist_ok=True)
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    write_json(job_file, job)
    return "new"


def _read_manifests(out: Path) -> tuple[dict[tuple[int, int], dict[str, Any]], dict[int, dict[str, Any]]]:
    done: dict[tuple[int, int], dict[str, Any]] = {}
    skipped: dict[int, dict[str, Any]] = {}
    for path in sorted((out / JOB_DIR / DONE_DIR).glob("*.json")):
        doc = orjson.loads(path.read_bytes())
        for rec in doc["records"]:
            done[(rec["source_image_id"], rec["copy"])] = rec
        for s in doc["skipped"]:
            skipped[int(s["id"])] = s
    return done, skipped


def _chunks(items: list[SourceItem], workers: int, chunk_size: int | None) -> list[list[SourceItem]]:
    units = sum(len(it.copies) for it in items)
    if chunk_size is None:
        # 16-64 images per task (fewer: scheduling costs more than the work), and at least ~4 tasks per worker to balance
        chunk_size = min(64, max(4, math.ceil(units / (workers * 4))))
    chunks: list[list[SourceItem]] = []
    cur: list[SourceItem] = []
    n = 0
    for it in items:
        cur.append(it)
        n += len(it.copies)
        if n >= chunk_size:
            chunks.append(cur)
            cur, n = [], 0
    if cur:
        chunks.append(cur)
    return chunks


@dataclass
class _Job:
    """One augment run: what it reads, where it writes and how it runs (options already checked)."""

    source: Store
    selected: list[dict[str, Any]]
    out: Path
    doc: dict[str, Any]  # job.json: what makes two runs the same job
    copies: int
    workers: int
    scheduler: str
    device: str
    backend: str  # opencv | torchvision | auto (auto: the worker picks)
    on_error: str
    started: float  # perf_counter at the start, for the result's seconds

    def result(self, **fields: Any) -> AugmentResult:
        return AugmentResult(
            out=self.out,
            source_images=len(self.selected),
            copies=self.copies,
            seconds=time.perf_counter() - self.started,
            scheduler=self.scheduler,
            workers=self.workers,
            **fields,
        )


def augment(
    store_path: str | os.PathLike[str],
    pipeline: Pipeline,
    out: str | os.PathLike[str],
    *,
    copies: int | None = None,
    where: str | None = None,
    split: str | None = None,
    workers: int | None = None,
    scheduler: str = "processes",
    device: str = "auto",
    backend: str = "auto",
    on_error: str = "fail",
    chunk_size: int | None = None,
    progress: ProgressFn | None = None,
    on_dashboard: Callable[[str], None] | None = None,
) -> AugmentResult:
    """Augment the images of a store into a new store at ``out``. See the module docstring."""
    t0 = time.perf_counter()
    t_wall0 = time.time()
    copies, workers, backend = _check_options(pipeline, copies, workers, scheduler, device, backend, on_error)
    source = Store.open(store_path)
    selected = source.select(where, split=split)
    if not selected:
        raise UsageError(
            f"{source.root}: no images to augment" + (" match the selection" if where or split else ""),
            hint="check --where/--split with `dataforge info`",
        )
    job = _Job(
        source=source,
        selected=selected,
        out=Path(out),
        doc=_job_doc(source, pipeline, copies, where, split),
        copies=copies,
        workers=workers,
        scheduler=scheduler,
        device=device,
        backend=backend,
        on_error=on_error,
        started=t0,
    )
    _check_outside(job.out, source)
    job.out.mkdir(parents=True, exist_ok=True)
    with StoreLock(job.out, timeout_s=1.0):
        if _prepare_out(job.out, source, job.doc) == "done":
            finished = Store.open(job.out)
            return job.result(
                images=len(finished.images),
                resumed_units=0,
                counts=finished.data["dataforge"]["augment"].get("counts", {}),
                skipped=[],
                dashboard=None,
                report=None,
                already_done=True,
            )
        done, skipped = _read_manifests(job.out)
        items = _plan(source, selected, copies, pipeline.output.extension, done, skipped)
        resumed = len(done) + sum(copies for _ in skipped)
        spec: dict[str, Any] = {
            "source_images_dir": str(source.images_dir.resolve()),
            "out_root": str(job.out.resolve()),
            "pipeline": pipeline.canonical(),
            "backend": backend,
            "device": device,
            "on_error": on_error,
        }
        spec["flip_perms"] = _flip_perms(source, pipeline)
        specs = [ChunkSpec(items=c, **spec) for c in _chunks(items, workers, chunk_size)]
        total = copies * len(selected)
        timing: list[tuple[float, float]] = []
        started = time.time()
        already = total - sum(s.units for s in specs)
        dashboard = _run(job, specs, total, already, progress, on_dashboard, timing)
        done, skipped = _read_manifests(job.out)
        res = _assemble(job, done, skipped, resumed, dashboard)
        if timing:
            res.timing = {
                "before_run_s": round(started - t_wall0, 3),
                "first_chunk_start_s": round(min(t for t, _ in timing) - started, 3),
                "worker_busy_s": round(sum(b - a for a, b in timing), 3),
                "last_chunk_end_s": round(max(b for _, b in timing) - started, 3),
                "total_s": round(time.time() - t_wall0, 3),
            }
        return res


def _check_options(
    pipeline: Pipeline,
    copies: int | None,
    workers: int | None,
    scheduler: str,
    device: str,
    backend: str,
    on_error: str,
) -> tuple[int, int, str]:
    """Refuse what cannot run, before anything is written: (copies, workers, backend to use)."""
    if any(s.type == "normalize" for s in pipeline.steps):
        raise UsageError(
            "the pipeline has a 'normalize' step, which makes float tensors, not image files",
            hint="keep normalize for training; augment with a pipeline without it",
        )
    if on_error not in ("fail", "skip"):
        raise UsageError(f"--on-error must be fail or skip, not {on_error!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, not {device!r}")
    if backend not in ("auto", "opencv", "torchvision"):
        raise UsageError(f"--backend must be auto, opencv or torchvision, not {backend!r}")
    if device == "cuda" and backend == "opencv":
        raise UsageError(
            "--backend opencv runs on the CPU; --device cuda needs --backend torchvision or auto"
        )
    if device == "cuda" and scheduler in SCHEDULERS:
        from dataforge.augment.gpu import resolve_device

        resolve_device("cuda")  # a local job: fail now, with the fix, not inside a worker
    copies = copies if copies is not None else pipeline.copies
    if copies < 1:
        raise UsageError(f"--copies must be at least 1, not {copies}")
    workers = workers or usable_cores()
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    if backend == "auto" and device != "auto":
        backend = "torchvision" if device == "cuda" else "opencv"
    return copies, workers, backend


def _flip_perms(source: Store, pipeline: Pipeline) -> dict[int, list[int]]:
    """Each keypoint category's flip permutation (:func:`dataforge.keypoints.flip_perms`)."""
    try:
        return flip_perms(source.data["categories"], pipeline.keypoints.flip_idx)
    except ValueError as exc:
        kp = sorted(c["name"] for c in source.data["categories"] if c.get("keypoints"))
        raise UsageError(
            f"{source.root}: keypoints.flip_idx: {exc}", hint=f"its keypoint categories: {kp or 'none'}"
        ) from None


def _plan(
    source: Store,
    selected: list[dict[str, Any]],
    copies: int,
    ext: str,
    done: dict[tuple[int, int], dict[str, Any]],
    skipped: dict[int, dict[str, Any]],
) -> list[SourceItem]:
    names = _out_names(selected, copies, ext)
    cats = {c.id for c in source.categories}
    anns_by_image = source.index.anns_by_image
    items = []
    for img in selected:
        iid = int(img["id"])
        if iid in skipped:
            continue
        todo = [k for k in range(copies) if (iid, k) not in done]
        if not todo:
            continue
        boxes, anns = [], []
        for a in anns_by_image.get(iid, ()):
            if a["category_id"] not in cats:
                continue
            boxes.append(list(xywh_to_xyxy_floats(a["bbox"])))
            anns.append({k: v for k, v in a.items() if k not in _REMADE})
        items.append(
            SourceItem(
                image_id=iid,
                file_name=img["file_name"],
                width=int(img["width"]),
                height=int(img["height"]),
                boxes_xyxy=boxes,
                annotations=anns,
                copies=todo,
                out_names=[names[iid][k] for k in todo],
            )
        )
    return items


#: annotation fields an augmented copy gets anew (the rest it keeps as they are; the worker moves
#: ``segmentation`` and ``keypoints`` and writes them anew)
_REMADE = ("id", "image_id", "bbox", "area", "num_keypoints")


def _run(
    job: _Job,
    specs: list[ChunkSpec],
    total: int,
    already: int,
    progress: ProgressFn | None,
    on_dashboard: Callable[[str], None] | None,
    timing: list[tuple[float, float]],
) -> str | None:
    """Run the chunks (``already`` of ``total`` units were done before); ``timing`` receives each
    chunk's (start, end) wall-clock times. Returns the dask dashboard's address, if any."""
    done_units = already
    if progress:
        progress(done_units, total)
    if not specs:
        return None
    if job.scheduler == "sync":
        for s in specs:
            r = run_chunk(s)
            timing.append((r["started"], r["finished"]))
            done_units += s.units
            if progress:
                progress(done_units, total)
        return None

    from distributed import as_completed

    gpu_only = job.device == "cuda"
    with _dask_client(job) as client:
        dashboard = client.dashboard_link if getattr(client, "dashboard_link", None) else None
        if dashboard and on_dashboard:
            on_dashboard(dashboard)
        resources = {"GPU": 1} if gpu_only else None
        futures = [client.submit(run_chunk, s, pure=False, resources=resources) for s in specs]
        units = {f.key: s.units for f, s in zip(futures, specs, strict=True)}
        try:
            for fut in as_completed(futures):
                r = fut.result()  # raises the chunk's error (a DataError names the image)
                timing.append((r["started"], r["finished"]))
                done_units += units[fut.key]
                if progress:
                    progress(done_units, total)
        except BaseException:
            client.cancel(futures)
            raise
        return dashboard


@contextlib.contextmanager
def _dask_client(job: _Job) -> Iterator[Any]:
    """A client of a local cluster (``processes``/``threads``) or of the scheduler at an address,
    checked to offer a GPU when the job needs one; closed (with the local cluster) at the end."""
    import dask
    from distributed import Client, LocalCluster

    cluster = None
    gpu_only = job.device == "cuda"
    with dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_MALLOC_ENV}):
        if job.scheduler in SCHEDULERS:
            processes = job.scheduler == "processes"
            cluster = LocalCluster(
                n_workers=job.workers if processes else 1,
                threads_per_worker=1 if processes else job.workers,
                processes=processes,
                dashboard_address=":0",
                resources={"GPU": 1} if gpu_only else None,
                silence_logs=50,
            )
            client = Client(cluster)
        else:
            try:
                client = Client(job.scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
            except (OSError, TimeoutError) as exc:
                raise UsageError(
                    f"--scheduler {job.scheduler}: cannot reach a dask scheduler there ({exc})",
                    hint="start one with `dask scheduler` and workers with `dask worker ADDRESS`, "
                    "or leave --scheduler out for a local cluster",
                ) from None
    try:
        if gpu_only and cluster is None:
            info = client.scheduler_info()
            if not any(w.get("resources", {}).get("GPU") for w in info.get("workers", {}).values()):
                raise UsageError(
                    f"--device cuda: no worker of {job.scheduler} offers a GPU resource",
                    hint="start GPU workers with `dask worker ADDRESS --resources GPU=1`",
                )
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _assemble(
    job: _Job,
    done: dict[tuple[int, int], dict[str, Any]],
    skipped: dict[int, dict[str, Any]],
    resumed: int,
    dashboard: str | None,
) -> AugmentResult:
    """The new store from the workers' manifests: written whole, then the job's files go."""
    out, source = job.out, job.source
    data, counts = _output_dataset(job, done, skipped)
    warnings: list[str] = []
    rules = Pipeline.model_validate(job.doc["pipeline"]).boxes
    data["dataforge"]["augment"] = {
        **job.doc,
        "counts": counts,
        "box_rules": rules.model_dump(),
        "skipped": len(skipped),
    }
    data["info"]["description"] = f"dataforge augment of {source.root.name}"
    report_path = None
    if skipped:
        (out / REPORTS_DIR).mkdir(exist_ok=True)
        report_path = out / REPORTS_DIR / f"augment-{utc_now().replace(':', '')}.json"
        write_json(report_path, {"skipped": list(skipped.values()), "counts": counts})
    _remove_strays(out / IMAGES_DIR, {img["file_name"] for img in data["images"]})
    Store.write_new(
        out,
        data,
        op="augment",
        details={
            "source_store": job.doc["source_store"],
            "pipeline": job.doc["pipeline_sha256"],
            "images": len(data["images"]),
            **counts,
        },
    )
    shutil.rmtree(out / JOB_DIR, ignore_errors=True)
    return job.result(
        images=len(data["images"]),
        resumed_units=resumed,
        counts=counts,
        skipped=list(skipped.values()),
        dashboard=dashboard,
        report=report_path,
        warnings=warnings,
    )


def _output_dataset(
    job: _Job, done: dict[tuple[int, int], dict[str, Any]], skipped: dict[int, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, int]]:
    """The COCO document of the output (images in source order, then copy order: the same store
    however the work was split) and the box counts."""
    source = job.source
    data = empty_dataset()
    data["categories"] = [dict(c) for c in source.data["categories"]]
    counts = {"boxes_in": 0, "boxes_out": 0, "boxes_clipped": 0, "boxes_dropped": 0}
    if any(a.get("segmentation") for a in source.annotations):
        counts["masks_out"] = 0
    if any(a.get("keypoints") for a in source.annotations):
        counts["keypoints_out"] = 0
    lineage = {
        "pipeline": job.doc["pipeline_sha256"],
        "source_store": job.doc["source_store"],
    }
    seed = job.doc["pipeline"]["seed"]
    next_ann = 1
    for img in job.selected:
        iid = int(img["id"])
        for k in range(job.copies):
            rec = done.get((iid, k))
            if rec is None:
                if iid in skipped:
                    continue
                raise StoreError(
                    f"{job.out}: internal error: image {iid} copy {k} has no result"
                )  # pragma: no cover
            new_id = len(data["images"]) + 1
            entry: dict[str, Any] = {
                "id": new_id,
                "file_name": rec["file_name"],
                "width": rec["width"],
                "height": rec["height"],
                "sha256": rec["sha256"],
                "tags": list(img.get("tags", [])),
                "source": {
                    **lineage,
                    "source_image_id": iid,
                    "source_file_name": img["file_name"],
                    "source_sha256": img.get("sha256"),
                    "copy": k,
                    "seed": seed,
                    "backend": rec["backend"],
                    "ops": rec["ops"],
                },
            }
            if img.get("split") is not None:
                entry["split"] = img["split"]
            if img.get("labels"):
                entry["labels"] = list(img["labels"])
            data["images"].append(entry)
            for a in rec["annotations"]:
                x0, y0, x1, y1 = a.pop("bbox_xyxy")
                w, h = x1 - x0, y1 - y0
                area = a.pop("area", w * h)  # a mask's pixel count, as COCO's area
                data["annotations"].append(
                    {**a, "id": next_ann, "image_id": new_id, "bbox": [x0, y0, w, h], "area": area}
                )
                if "segmentation" in a:
                    counts["masks_out"] += 1
                if "num_keypoints" in a:
                    counts["keypoints_out"] += a["num_keypoints"]
                next_ann += 1
            counts["boxes_in"] += len(source.index.anns_by_image.get(iid, ()))
            counts["boxes_out"] += len(rec["annotations"])
            counts["boxes_clipped"] += sum(
                1 for a in rec["annotations"] if a.get("visibility", 1.0) < 1 - 1e-9
            )
    counts["boxes_dropped"] = counts["boxes_in"] - counts["boxes_out"]
    return data, counts


def _remove_strays(images_dir: Path, keep: set[str]) -> None:
    """Delete what killed workers left in the output's images/: temp files, and images of
    chunks that never finished and whose source was later skipped. Only this job writes there."""
    for path in sorted(images_dir.rglob("*"), reverse=True):
        rel = path.relative_to(images_dir).as_posix()
        if path.is_file() and rel not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def load_job(out: Path) -> dict[str, Any] | None:
    path = out / JOB_DIR / "job.json"
    return orjson.loads(path.read_bytes()) if path.is_file() else None
