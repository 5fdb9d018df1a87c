"""The Python API behind every CLI command: one function per verb, each returning a typed result.
The CLI (``dataforge.cli``) parses arguments, calls one of these and renders what it returns."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataforge.errors import DataError, DataforgeError, ImageError, UsageError
from dataforge.formats import accounting, detect_format, get_format
from dataforge.formats.base import EmbedsImages, ExportResult, OnError
from dataforge.formats.common import EXPORT_INCOMPLETE
from dataforge.ingest import ImportResult, ingest
from dataforge.ingest.direct import ingest_records
from dataforge.jsonio import write_json
from dataforge.runtime import paused_gc
from dataforge.splits import normalize_ratios, random_split, stratified_split
from dataforge.store import Store
from dataforge.validate import ValidationReport, validate_store

if TYPE_CHECKING:
    from dataforge.augment import Pipeline
    from dataforge.augment.job import AugmentResult
    from dataforge.doctor import Check
    from dataforge.evaluation.run import EvaluationResult
    from dataforge.labelstudio.server import LabelStudioServer
    from dataforge.training.contract import FitResult

PathLike = str | os.PathLike[str]


def import_dataset(
    source: PathLike,
    *,
    store: PathLike,
    format: str = "auto",
    images: PathLike | None = None,
    on_error: OnError = "fail",
    split: str | None = None,
    tags: Iterable[str] = (),
    link: bool = False,
    categories: PathLike | None = None,
    exif: str = "keep",
    strict: bool = False,
    **options: Any,
) -> ImportResult:
    """Import a dataset into a store (created if missing). All-or-nothing unless ``on_error="skip"``.
    ``categories``: a ``categories.json`` an export wrote: its categories keep their store ids.
    ``exif="rotate"``: images with an EXIF orientation are turned upright, their labels with them
    (the default, ``"keep"``, stores pixels and labels as the files have them)."""
    src = Path(source)
    if not src.exists():
        raise UsageError(f"{src}: no such file or directory")
    fmt = detect_format(src) if format == "auto" else get_format(format)
    if not fmt.can_import:
        raise UsageError(f"format {fmt.name!r} cannot be imported")
    with paused_gc():  # a large import builds millions of acyclic dicts
        if categories is not None:  # the table's ids: the records are read first, then renumbered
            from dataforge.ingest.category_table import apply_category_table

            batch = fmt.read(src, images=Path(images) if images is not None else None, **options)
            apply_category_table(batch, Path(categories), Path(store))
            return ingest(
                Path(store),
                batch,
                on_error=on_error,
                split=split,
                tags=tags,
                link=link,
                exif=exif,
                strict=strict,
            )
        if isinstance(fmt, EmbedsImages) and exif == "rotate":
            raise UsageError(
                f"--exif rotate: not available for {fmt.name}, whose images are copied out of its files as they are"
            )
        if isinstance(fmt, EmbedsImages) and strict:  # the records' losses are known once parsed
            batch = fmt.read(src, images=Path(images) if images is not None else None, **options)
            return ingest(
                Path(store), batch, on_error=on_error, split=split, tags=tags, link=link, strict=strict
            )
        if isinstance(fmt, EmbedsImages):  # parsed, checked and written per process
            if images is not None:  # for records that name their images without holding them
                options["images"] = Path(images)
            return ingest_records(
                Path(store), fmt.scan(src, **options), on_error=on_error, split=split, tags=tags
            )
        batch = fmt.read(src, images=Path(images) if images is not None else None, **options)
        return ingest(
            Path(store), batch, on_error=on_error, split=split, tags=tags, link=link, exif=exif, strict=strict
        )


@dataclass
class TagResult:
    matched: int
    changed: int


def tag_images(
    store: PathLike,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    where: str | None = None,
    ids: Sequence[int] | None = None,
) -> TagResult:
    """Add and/or remove tags on the images matched by ``where`` and/or ``ids`` (all if neither)."""
    if not add and not remove:
        raise UsageError("nothing to do: give --add TAG and/or --remove TAG")
    details: dict[str, Any] = {
        "add": list(add),
        "remove": list(remove),
        "where": where,
        "ids": list(ids or []),
    }
    with Store.edit(store, "tag", details=details) as s:
        matched = s.select(where)
        if ids is not None:
            wanted = set(ids)
            missing = wanted - set(s.index.image_by_id)
            if missing:
                raise UsageError(f"{store}: no images with ids {sorted(missing)[:10]}")
            matched = [img for img in matched if img["id"] in wanted]
        match_ids = [img["id"] for img in matched]
        changed = s.add_tags(match_ids, add) if add else 0
        changed += s.remove_tags(match_ids, remove) if remove else 0
        details.update(matched=len(match_ids), changed=changed)
    return TagResult(len(match_ids), changed)


def split_store(
    store: PathLike,
    *,
    ratios: dict[str, float],
    seed: int = 0,
    stratify: bool = False,
    where: str | None = None,
    group_by: str | None = None,
) -> SplitResult:
    """Assign splits to the matched images (all by default): images per split, and boxes per split
    of each category. ``group_by``: ``"cluster"`` (duplicate clusters, :mod:`dataforge.dedupe`) or
    a field of the image record (``source.video``): a group never spans splits."""
    ratios = normalize_ratios(ratios)
    details: dict[str, Any] = {"ratios": ratios, "seed": seed, "stratify": stratify, "where": where}
    if group_by:
        details["group_by"] = group_by
    groups = _groups(Path(store), group_by, where) if group_by else None
    with Store.edit(store, "split", details=details) as s:
        images = s.select(where)
        deviation: dict[str, float] = {}
        if groups is not None:
            from dataforge.splits import grouped_split, split_deviation

            labels = {img["id"]: s.index.labels_of(img["id"]) for img in images}
            assignment = grouped_split(groups, labels, ratios, seed, stratify=stratify)
            names_of = s.index.category_names
            deviation = {
                names_of[lab]: round(d, 6)
                for lab, d in split_deviation(assignment, labels, ratios).items()
                if lab in names_of
            }
            details["groups"] = len(set(groups.values()))
        elif stratify:
            labels = {img["id"]: s.index.labels_of(img["id"]) for img in images}
            assignment = stratified_split(labels, ratios, seed)
        else:
            assignment = random_split([img["id"] for img in images], ratios, seed)
        s.set_splits(dict(assignment))
        counts = Counter(assignment.values())
        names = s.index.category_names
        per_cat: dict[str, Counter[str]] = {}
        for a in s.annotations:
            sp = assignment.get(a["image_id"])
            if sp is not None:
                per_cat.setdefault(names[a["category_id"]], Counter())[sp] += 1
        details["counts"] = dict(counts)
    return SplitResult(
        images={k: counts.get(k, 0) for k in ratios},
        boxes_by_category={c: {k: v.get(k, 0) for k in ratios} for c, v in sorted(per_cat.items())},
        deviation=deviation,
    )


def _groups(store: Path, group_by: str, where: str | None) -> dict[int, object]:
    """Image id -> its group: its duplicate cluster, or the value of a field of its record."""
    s = Store.open(store)
    if group_by == "cluster":
        from dataforge.dedupe import find_duplicates

        return {
            i: ("cluster", n)
            for n, c in enumerate(find_duplicates(s, where=where).clusters)
            for i in c.image_ids
        }
    path = group_by.split(".")
    out: dict[int, object] = {}
    found = 0
    for img in s.select(where):
        value: Any = img
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            out[int(img["id"])] = ("field", repr(value))
            found += 1
    if not found:
        raise UsageError(
            f"--group-by {group_by!r}: no image has that field",
            hint="group by `cluster` (duplicates) or a field of the image records, e.g. source.video",
        )
    return out


def export_dataset(
    store: PathLike,
    *,
    format: str,
    out: PathLike,
    where: str | None = None,
    split: str | None = None,
    strict: bool = False,
    **options: Any,
) -> ExportResult:
    """Export the matched images of a store with a format plugin; ``categories.json`` beside it
    holds the category table used, and the result counts what was kept, approximated and dropped
    per label type (``strict``: any loss is an error instead).

    An export writes into a new or empty folder and marks it incomplete until it ends. One that
    fails (a store image gone missing, a full disk) raises a ``DataforgeError`` and removes what it
    wrote; one that was killed leaves the mark, and the next export into that folder clears it
    first. Either way the same command can simply be run again.
    """
    fmt = get_format(format)
    if not fmt.can_export:
        raise UsageError(f"format {fmt.name!r} cannot be exported")
    out_dir = Path(out)
    marker = out_dir / EXPORT_INCOMPLETE
    if marker.is_file():  # an export into this folder was killed: all in it is that export's
        _remove_export(out_dir, keep_dir=True)
    existed = out_dir.exists()
    ours = not existed or (out_dir.is_dir() and not any(out_dir.iterdir()))  # nothing in it to keep
    with paused_gc():
        s = Store.open(store)
        ids = [img["id"] for img in s.select(where, split=split)]
        counts = accounting.present(s, ids)
        lost = {**accounting.losses(fmt, counts), **accounting.approximations(fmt, counts)}
        if strict and lost:
            raise DataError(
                f"--strict: the {fmt.name} format cannot hold all of it as it is: "
                + ", ".join(f"{n} {what}" for what, n in lost.items()),
                hint="export to a format that holds them, leave them out (--where), or drop --strict",
            )
        if ours:
            out_dir.mkdir(parents=True, exist_ok=True)
            marker.write_text(
                f"dataforge export --format {fmt.name} from {s.root} is writing this folder; if this "
                "file is still here, it stopped before the end, and the next export into this "
                "folder starts it afresh\n",
                encoding="utf-8",
            )
        try:
            result = fmt.export(s, out_dir, image_ids=ids, **options)
            if strict and result.approximated:
                raise DataError(
                    f"--strict: the {fmt.name} format could only approximate "
                    + ", ".join(f"{n} {what}" for what, n in result.approximated.items())
                    + "; nothing was written",
                    hint="drop --strict to accept the approximation",
                )
            write_json(out_dir / "categories.json", accounting.category_table(s, fmt.name, result))
        except BaseException as exc:
            if ours:
                _remove_export(out_dir, keep_dir=existed)
            if isinstance(exc, OSError):
                raise _export_os_error(exc, s, out_dir) from exc
            raise
        if ours:
            marker.unlink()
        accounting.account(fmt, counts, result)
        result.files.append(out_dir / "categories.json")
        return result


def _remove_export(out: Path, *, keep_dir: bool) -> None:
    if not keep_dir:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir() if out.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _export_os_error(exc: OSError, store: Store, out: Path) -> DataforgeError:
    """An OSError from an exporter as the one-line error a user can act on."""
    name = str(exc.filename or "")
    what = exc.strerror or str(exc)
    if name and Path(name).resolve().is_relative_to(store.images_dir.resolve()):
        return ImageError(
            f"store image {name}: {what}; the export stopped and removed what it wrote to {out}",
            hint=f"`dataforge validate {store.root}` lists every missing or unreadable image",
        )
    return DataforgeError(
        f"export to {out} failed: {name + ': ' if name else ''}{what}; what it wrote was removed"
    )


def validate(store: PathLike, *, check_files: bool = True) -> ValidationReport:
    return validate_store(Store.open(store), check_files=check_files)


def info(store: PathLike, *, where: str | None = None) -> dict[str, Any]:
    from dataforge.info import store_info

    return store_info(Store.open(store), where=where)


# -- the rest of the verbs: typed results over the modules that do the work ------------------------
@dataclass
class SplitResult:
    #: images per split, in the order of the ratios
    images: dict[str, int]
    #: per category name: boxes per split
    boxes_by_category: dict[str, dict[str, int]]
    #: with group_by: per category name, the largest gap between a split's share of its images and the ratio
    deviation: dict[str, float] = field(default_factory=dict)


def image_lineage(store: PathLike, image_id: int) -> dict[str, Any]:
    """One image's record and, for an augmented image, its source image and the ops applied (JSON)."""
    from dataforge.info import image_lineage as lineage

    return lineage(Store.open(store), image_id)


@dataclass
class HistoryEntry:
    time: str
    op: str
    revision: int | None
    user: str
    #: what the operation recorded (counts, options, a report's path)
    details: dict[str, Any]
    #: the whole ``history.jsonl`` line
    entry: dict[str, Any]


def history(store: PathLike, *, last: int = 20) -> list[HistoryEntry]:
    """The last ``last`` operations that changed the store, oldest first."""
    keys = ("time", "op", "revision", "user", "host", "dataforge")
    return [
        HistoryEntry(
            time=e["time"],
            op=e["op"],
            revision=e.get("revision"),
            user=e.get("user", ""),
            details={k: v for k, v in e.items() if k not in keys},
            entry=e,
        )
        for e in Store.open(store).history()[-last:]
    ]


@dataclass
class FormatInfo:
    name: str
    can_import: bool
    can_export: bool
    #: the installed distribution that provides it
    distribution: str
    description: str


def formats() -> list[FormatInfo]:
    """The dataset format plugins installed, built-in and third-party."""
    from dataforge import plugins
    from dataforge.formats import list_formats

    found = plugins.available(plugins.FORMATS)
    return [
        FormatInfo(f.name, f.can_import, f.can_export, found[f.name].distribution, f.description)
        for f in list_formats()
    ]


def augment(
    store: PathLike,
    pipeline: PathLike | Pipeline,
    out: PathLike,
    *,
    seed: int | None = None,
    **options: Any,
) -> AugmentResult:
    """Augment ``store`` into a new store ``out`` with ``pipeline`` (a file or a loaded pipeline);
    ``seed`` overrides the pipeline's. ``options``: those of :func:`dataforge.augment.job.augment`."""
    from dataforge.augment.job import augment as run_augment

    return run_augment(store, _pipeline(pipeline, seed), out, **options)


def preview(
    store: PathLike,
    pipeline: PathLike | Pipeline,
    out: PathLike,
    *,
    n: int,
    seed: int | None = None,
    where: str | None = None,
    split: str | None = None,
) -> Path:
    """A PNG of ``n`` images, each beside its first augmented copy with the boxes drawn."""
    from dataforge.augment.preview import preview as draw_preview

    if n < 1:
        raise UsageError(f"--preview needs a positive number of images, not {n}")
    return Path(
        draw_preview(Path(store), _pipeline(pipeline, seed), Path(out), n=n, where=where, split=split)
    )


def _pipeline(pipeline: PathLike | Pipeline, seed: int | None) -> Pipeline:
    from dataforge.augment import Pipeline as PipelineModel
    from dataforge.augment import load_pipeline

    loaded = pipeline if isinstance(pipeline, PipelineModel) else load_pipeline(Path(pipeline))
    return loaded.model_copy(update={"seed": seed}) if seed is not None else loaded


def trainers() -> list[dict[str, Any]]:
    """The installed trainer plugins: name, task, models, metric, options (JSON Schema) and distribution."""
    from dataforge.training.contract import describe, trainer_names

    return [describe(n) for n in trainer_names()]


def train(store: PathLike, **options: Any) -> FitResult:
    """Train a trainer plugin on ``store`` (options: those of :func:`dataforge.training.run.train`).
    Under ``torchrun`` every rank returns; ``FitResult.rank`` says which one this is."""
    from dataforge.training.run import train as run_train

    result = run_train(Path(store), **options)
    result.rank = int(os.environ.get("RANK", "0"))
    return result


@dataclass
class PredictResult:
    task: str
    images: int
    predictions: int
    runs: list[str]
    out: Path


def predict(runs: Sequence[PathLike], store: PathLike, **options: Any) -> PredictResult:
    """Predictions of one run, or an ensemble of several, for the store's images, written to ``out``
    (COCO results for detection, a classification JSON); options: those of
    :func:`dataforge.training.run.predict`."""
    from dataforge.training.run import predict as run_predict

    if not runs:
        raise UsageError("predict needs one or more run directories (or checkpoints) and then a store")
    rep = run_predict([Path(r) for r in runs], Path(store), **options)
    return PredictResult(rep["task"], rep["images"], rep["predictions"], rep["runs"], Path(rep["out"]))


def evaluate(
    predictions: PathLike,
    *,
    store: PathLike | None = None,
    gt_file: PathLike | None = None,
    split: str | None = None,
    where: str | None = None,
    out: PathLike | None = None,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    fiftyone: str | None = None,
    iou_types: list[str] | None = None,
    kpt_sigmas: list[float] | None = None,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    compare: PathLike | None = None,
    explain: bool = False,
) -> EvaluationResult:
    """Evaluate predictions (COCO results, COCO-Stuff semantic results, or classification JSON)
    against a store or a COCO file: COCO box, mask (``segm``) and keypoint mAP equal to
    pycocotools', VOC AP, per class; mIoU, pixel accuracy; or accuracy, top-k, F1.
    ``iou_types`` picks among ``bbox``, ``segm`` and ``keypoints`` (default: each the predictions
    carry); ``kpt_sigmas`` are the OKS sigmas per point. Detections also get TIDE's error
    breakdown, operating points, and ``bootstrap`` resamples' 95% intervals (0: none);
    ``compare``: another predictions file, B, paired against these, A; ``explain``: the settings
    behind the numbers and the same predictions under VOC and Ultralytics conventions. With ``out``,
    ``report.json`` and ``report.html`` there; with ``fiftyone``, a FiftyOne dataset and its
    evaluation beside ours. The scores typed, and the whole report as ``.report``."""
    from dataforge.evaluation.run import EvaluationResult
    from dataforge.evaluation.run import evaluate as run_evaluate

    report = run_evaluate(
        Path(predictions),
        store=Path(store) if store is not None else None,
        gt_file=Path(gt_file) if gt_file is not None else None,
        split=split,
        where=where,
        out=Path(out) if out is not None else None,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        fiftyone=fiftyone,
        iou_types=iou_types,
        kpt_sigmas=kpt_sigmas,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
        compare=Path(compare) if compare is not None else None,
        explain=explain,
    )
    return EvaluationResult.from_report(report)


def serve_app(name: str, *, address: str = "127.0.0.1", port: int = 5151) -> None:
    """The FiftyOne App on dataset ``name`` until Ctrl-C."""
    from dataforge.evaluation.app import serve

    serve(name, address=address, port=port)


def doctor(only: list[str] | None = None) -> list[Check]:
    """Which components work here (each check in a fresh process), with a fix for each that does not."""
    from dataforge.doctor import run_checks

    return run_checks(only)


# -- Label Studio ---------------------------------------------------------------------------------
@dataclass
class PushResult:
    project: int
    created: bool
    pushed: int
    already_there: int
    requests: int


@dataclass
class PullResult:
    project: int
    updated: int
    skipped: int
    requests: int
    #: everything the pull recorded in the store's history
    details: dict[str, Any]
    #: with on_error="skip": the tasks left out, ``{"task", "image_id", "problem"}`` each
    invalid: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ProjectStatus:
    project: int
    title: str
    tasks: int
    annotated: int
    skipped: int
    pending: int
    last_pull: str | None


def _document_root(given: PathLike | None) -> Path:
    """The folder the Label Studio server serves local files from: ``given``, else
    $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT."""
    root = given or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    if not root:
        raise UsageError(
            "no document root: pass --document-root or set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
            "(the folder the Label Studio server serves local files from)"
        )
    return Path(root)


def labelstudio_push(
    store: PathLike,
    project: str,
    *,
    url: str | None = None,
    api_key: str | None = None,
    document_root: PathLike | None = None,
    where: str | None = None,
    predictions: PathLike | None = None,
    with_annotations: bool = False,
) -> PushResult:
    """Push the store's images (optionally its boxes, or predictions to review) as tasks of a
    project (created if missing). ``url``/``api_key`` default to $LABEL_STUDIO_URL and
    $LABEL_STUDIO_API_KEY; ``document_root`` to $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT."""
    from dataforge.evaluation.predictions import load_predictions
    from dataforge.labelstudio.client import LabelStudio
    from dataforge.labelstudio.sync import push

    root = _document_root(document_root)
    preds = load_predictions(Path(predictions)) if predictions else None
    r = push(
        Path(store),
        project,
        LabelStudio(url, api_key),
        document_root=root,
        where=where,
        predictions=preds,
        with_annotations=with_annotations,
        predictions_source=Path(predictions).name if predictions else "predictions",
    )
    return PushResult(r["project"], r["created"], r["pushed"], r["already_there"], r["requests"])


def labelstudio_pull(
    store: PathLike,
    project: str,
    *,
    url: str | None = None,
    api_key: str | None = None,
    on_error: str = "fail",
) -> PullResult:
    """Bring the project's finished annotations back into the store (atomic, incremental): boxes,
    polygons, brush masks, keypoints and image labels. ``on_error="skip"`` leaves out (and reports,
    and tags ``labelstudio:invalid``) the tasks with a problem and pulls the rest."""
    from dataforge.labelstudio.client import LabelStudio
    from dataforge.labelstudio.sync import pull

    r = pull(Path(store), project, LabelStudio(url, api_key), on_error=on_error)
    return PullResult(r["project"], r["updated"], r["skipped"], r["requests"], r, r["invalid_tasks"])


def labelstudio_status(
    store: PathLike, project: str, *, url: str | None = None, api_key: str | None = None
) -> ProjectStatus:
    """Tasks, annotated, skipped and pending in the project, and this store's last pull."""
    from dataforge.labelstudio.client import LabelStudio
    from dataforge.labelstudio.sync import status

    r = status(Path(store), project, LabelStudio(url, api_key))
    return ProjectStatus(
        r["project"], r["title"], r["tasks"], r["annotated"], r["skipped"], r["pending"], r["last_pull"]
    )


def serve_labelstudio(
    data_dir: PathLike,
    *,
    document_root: PathLike,
    port: int = 8080,
    on_ready: Callable[[LabelStudioServer], None],
) -> None:
    """A local Label Studio server until Ctrl-C or SIGTERM; ``on_ready`` gets it once it answers
    (its URL, user, password and API token)."""
    from dataforge.labelstudio.server import LabelStudioServer, serve_until_stopped

    serve_until_stopped(
        LabelStudioServer(Path(data_dir), files_root=Path(document_root), port=port), on_ready
    )


def demo(
    directory: PathLike = "dataforge-demo",
    *,
    quick: bool = False,
    task: str = "detection",
    echo: Callable[[str], None] = print,
) -> dict[str, Path]:
    """The whole loop on built-in data in ``directory``: make a dataset, import, split, augment, train
    a detector (``task="segmentation"``: a semantic segmenter), predict, evaluate; ``echo`` gets
    each step's line. Returns where each output went."""
    from dataforge.demo import run_demo

    return run_demo(Path(directory), quick=quick, task=task, echo=echo)


@dataclass
class LeakageResult:
    leaks: list[Any]
    #: leaking clusters per split pair ("train/test")
    pairs: dict[str, int]
    moved: int


def dedupe(
    store: PathLike,
    *,
    where: str | None = None,
    threshold: int = 10,
    near: bool = True,
    tag: str | None = None,
    keep: str = "first",
    embeddings: PathLike | None = None,
    similarity: float = 0.95,
    device: str = "auto",
    fiftyone: str | None = None,
) -> Any:
    """Clusters of exact and near-duplicate images (:mod:`dataforge.dedupe`); ``embeddings``: also
    those a classifier's run finds ``similarity`` alike; ``tag``: tag all but one image of each
    cluster (``keep``: first or last by id); ``fiftyone``: a FiftyOne dataset of the clusters'
    images with a saved ``duplicates`` view."""
    from dataforge.dedupe import find_duplicates, tag_duplicates

    res = find_duplicates(
        Store.open(store),
        where=where,
        threshold=threshold,
        near=near,
        embeddings=Path(embeddings) if embeddings else None,
        similarity=similarity,
        device=device,
    )
    if tag:
        res.tagged = tag_duplicates(Path(store), res, tag, keep)
    if fiftyone:
        from dataforge.evaluation.fiftyone_export import duplicates_to_fiftyone

        res.fiftyone = duplicates_to_fiftyone(fiftyone, Store.open(store), res)
    return res


def leakage(
    store: PathLike, *, threshold: int = 10, apply: bool = False, group_by: str = "cluster"
) -> LeakageResult:
    """Duplicate clusters (or, ``group_by`` a field, images sharing its value) that span splits,
    each with the move that removes it; ``apply`` moves them."""
    from dataforge.dedupe import Cluster, DedupeResult, apply_moves, find_duplicates
    from dataforge.dedupe import leakage as find_leaks

    s = Store.open(store)
    if group_by == "cluster":
        found = find_duplicates(s, threshold=threshold)
    else:
        members: dict[object, list[int]] = {}
        for iid, group in _groups(Path(store), group_by, None).items():
            members.setdefault(group, []).append(iid)
        clusters = [Cluster(sorted(ids), "group") for ids in members.values() if len(ids) > 1]
        found = DedupeResult(len(s.images), clusters, 0, threshold)
    leaks, pairs = find_leaks(s, found)
    moved = apply_moves(Path(store), leaks) if apply and leaks else 0
    return LeakageResult(leaks, pairs, moved)


def mislabels(
    store: PathLike,
    predictions: PathLike,
    *,
    split: str | None = None,
    where: str | None = None,
    min_score: float = 0.5,
    loose_iou: float = 0.5,
    method: str = "prune_by_noise_rate",
    kinds: Sequence[str] | None = None,
    top: int | None = None,
    tag: str | None = None,
    labelstudio_project: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    document_root: PathLike | None = None,
) -> Any:
    """Label-error candidates from a model's predictions, ranked (:mod:`dataforge.mislabels`);
    ``tag``: tag their images; ``labelstudio_project``: push their images for review, with the
    store's labels as annotations and the model's predictions as pre-annotations."""
    from dataforge.evaluation.predictions import load_predictions
    from dataforge.mislabels import find_mislabels, tag_candidates

    preds = load_predictions(Path(predictions))
    report = find_mislabels(
        Path(store),
        preds,
        source=str(predictions),
        split=split,
        where=where,
        min_score=min_score,
        loose_iou=loose_iou,
        method=method,
        kinds=kinds,
        top=top,
    )
    if tag and report.candidates:
        report.tagged = tag_candidates(Path(store), report, tag)
    if labelstudio_project and report.candidates:
        from dataforge.labelstudio.client import LabelStudio
        from dataforge.labelstudio.sync import push

        ids = sorted({c.image_id for c in report.candidates})
        wanted = set(ids)
        r = push(
            Path(store),
            labelstudio_project,
            LabelStudio(url, api_key),
            document_root=_document_root(document_root),
            where=f"id in {ids}",
            predictions=[p for p in preds if p.get("image_id") in wanted],
            with_annotations=True,
            predictions_source=Path(predictions).name,
            model_version="dataforge-mislabels",
        )
        report.pushed = r["pushed"]
    return report
