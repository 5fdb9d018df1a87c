"""``dataforge mislabels``: label-error candidates from a model's predictions, ranked for review.

Detection (boxes; masks' boxes), with a prediction *confident* when its score is at least
``min_score`` and IoU thresholds as TIDE's (foreground 0.5, background 0.1):

``wrong_class``
    a ground truth with no confident prediction of its class at IoU >= 0.5, but a confident one of
    another class there (the best overlapping): the label is likely that class. Ranked by that
    prediction's score.
``missing_box``
    a confident prediction on no labelled object: it overlaps no ground truth of any class by IoU
    >= 0.5, and each one it touches (IoU >= 0.1) another prediction overlaps better (so it is not
    that object's loose evidence). Candidates on one spot (several classes predicted there) count
    once, the highest kept. An unlabelled object lying on a labelled one (IoU >= 0.5) is not found:
    from boxes alone it reads as that object's second guess.
``loose_box``
    a ground truth whose best confident prediction of its class overlaps it with IoU in
    [0.1, ``loose_iou``) and no better one exists, while that prediction is no other ground truth's
    of the class (IoU >= 0.5): the box is likely drawn loose, shifted or on part of the object;
    the prediction is the suggested box. Ranked by the prediction's score.

Classification: confident learning (Northcutt et al., JAIR 2021) through ``cleanlab``: the images
``cleanlab.filter.find_label_issues`` flags (``method``: its ``filter_by``, default
``prune_by_noise_rate``), ranked by its self-confidence label quality (the lower, the likelier an
error); the model's top class is the suggestion. The predictions must give every class's score
(``"scores"``, as ``dataforge predict`` writes them) and should be out-of-sample: a model scores
the images it was trained on as their (possibly wrong) labels.

Every candidate depends on the model: a confident model error reads as a label error. The tests
measure recall and precision on planted errors; the report says what was not looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.errors import DataError, UsageError
from dataforge.evaluation.predictions import category_of
from dataforge.metrics import box_iou

KINDS = ("wrong_class", "missing_box", "loose_box", "label")
FOREGROUND = 0.5
BACKGROUND = 0.1
METHODS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)


@dataclass
class Candidate:
    kind: str  # one of KINDS
    image_id: int
    file_name: str
    #: the model's confidence in the evidence (detection: the prediction's score; classification:
    #: 1 - cleanlab's label quality). The list is ranked by it, highest first.
    score: float
    given: str | None = None  # the category as labelled (None for a missing box)
    suggested: str | None = None  # the model's category
    annotation_id: int | None = None
    bbox: list[float] | None = None  # the labelled box, xywh
    predicted_bbox: list[float] | None = None  # the model's box, xywh
    iou: float | None = None  # of the two boxes


@dataclass
class MislabelReport:
    task: str  # "detection" or "classification"
    images: int  # images looked at
    candidates: list[Candidate]
    settings: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    #: images of the selection left out, and why (no prediction, several labels, ...)
    skipped: dict[str, int] = field(default_factory=dict)
    tagged: int = 0
    pushed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "images": self.images,
            "counts": self.counts,
            "skipped": self.skipped,
            "settings": self.settings,
            "tagged": self.tagged,
            "pushed": self.pushed,
            "candidates": [asdict(c) for c in self.candidates],
        }


def _xywh(box: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]


def _xyxy(bboxes: list[list[float]]) -> np.ndarray:
    b = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return b


def _best_first(pairs: np.ndarray, iou: np.ndarray) -> list[tuple[int, int]]:
    """``(ground truth, prediction)`` index pairs, the highest IoU first."""
    if not len(pairs):
        return []
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
    return [(int(pairs[k, 0]), int(pairs[k, 1])) for k in order.tolist()]


@dataclass
class _Image:
    """One image's objects and confident predictions, to phrase a candidate from."""

    image_id: int
    file_name: str
    objects: list[dict[str, Any]]
    score: np.ndarray
    category: np.ndarray
    box: np.ndarray  # xyxy
    iou: np.ndarray  # (objects, predictions)
    names: dict[int, str]

    def candidate(self, kind: str, g: int, j: int) -> Candidate:
        """Object ``g`` as labelled against prediction ``j``."""
        obj = self.objects[g]
        return Candidate(
            kind,
            self.image_id,
            self.file_name,
            float(self.score[j]),
            self.names.get(int(obj["category_id"])),
            self.names.get(int(self.category[j])),
            obj.get("id"),
            list(obj["bbox"]),
            _xywh(self.box[j]),
            round(float(self.iou[g, j]), 4),
        )


def detection_candidates(
    gt: dict[str, Any],
    preds: list[dict[str, Any]],
    *,
    min_score: float = 0.5,
    loose_iou: float = FOREGROUND,
) -> list[Candidate]:
    """The three detection kinds (module docstring) over ``gt``'s images, from checked COCO results
    (each with a ``bbox``)."""
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    files = {int(img["id"]): str(img["file_name"]) for img in gt["images"]}
    gts: dict[int, list[dict[str, Any]]] = {}
    crowds: dict[int, list[list[float]]] = {}
    for a in gt["annotations"]:
        if a.get("semantic") or not isinstance(a.get("bbox"), list):
            continue
        if a.get("iscrowd"):
            crowds.setdefault(int(a["image_id"]), []).append(a["bbox"])
        else:
            gts.setdefault(int(a["image_id"]), []).append(a)
    confident: dict[int, list[dict[str, Any]]] = {}
    for pred in preds:
        if pred["score"] >= min_score:
            confident.setdefault(int(pred["image_id"]), []).append(pred)
    out: list[Candidate] = []
    for iid in files:
        objs = gts.get(iid, [])
        ps = confident.get(iid, [])
        if not ps:
            continue
        g_box = _xyxy([a["bbox"] for a in objs])
        g_cat = np.array([int(a["category_id"]) for a in objs], dtype=np.int64)
        p_box = _xyxy([q["bbox"] for q in ps])
        p_cat = np.array([int(q["category_id"]) for q in ps], dtype=np.int64)
        p_score = np.array([q["score"] for q in ps], dtype=np.float64)
        iou = box_iou(g_box, p_box)  # (G, P)
        same = g_cat[:, None] == p_cat[None, :]

        image = _Image(iid, files[iid], objs, p_score, p_cat, p_box, iou, names)
        # found as labelled: one-to-one, same class, IoU >= loose_iou, the best pairs first
        matched_g: dict[int, int] = {}
        used: set[int] = set()
        for g, j in _best_first(np.argwhere(same & (iou >= loose_iou)), iou):
            if g not in matched_g and j not in used:
                matched_g[g] = j
                used.add(j)
        unmatched = [g for g in range(len(objs)) if g not in matched_g]
        # wrong class: an unmatched ground truth under a confident prediction of another class
        for g in unmatched:
            other = ~same[g] & (iou[g] >= FOREGROUND)
            other[list(used)] = False
            if other.any():
                j = int(np.flatnonzero(other)[np.argmax(iou[g][other])])
                used.add(j)
                matched_g[g] = j
                out.append(image.candidate("wrong_class", g, j))
        # loose: an unmatched ground truth whose free prediction of its class overlaps it 0.1 to loose_iou
        free = [g for g in unmatched if g not in matched_g]
        near = np.argwhere(same & (iou >= BACKGROUND) & (iou < loose_iou))
        for g, j in _best_first(near[np.isin(near[:, 0], free)], iou):
            if g not in matched_g and j not in used:
                matched_g[g] = j
                used.add(j)
                out.append(image.candidate("loose_box", g, j))
        # missing: a free prediction overlapping no ground truth by 0.5, and each one it touches
        # (IoU >= 0.1) accounted for by another prediction
        explained = np.zeros(len(objs), dtype=bool)
        explained[list(matched_g)] = True
        background = np.ones(len(ps), dtype=bool)
        background[list(used)] = False
        if len(objs):
            touched = iou >= BACKGROUND
            background &= (iou.max(axis=0) < FOREGROUND) & ~(touched & ~explained[:, None]).any(axis=0)
        if crowds.get(iid):
            # a prediction inside a crowd region is covered (COCO: intersection over the prediction)
            c_box = _xyxy(crowds[iid])
            lt = np.maximum(p_box[:, None, :2], c_box[None, :, :2])
            rb = np.minimum(p_box[:, None, 2:], c_box[None, :, 2:])
            inter = np.clip(rb - lt, 0, None).prod(axis=2)
            area = np.clip(p_box[:, 2:] - p_box[:, :2], 0, None).prod(axis=1)
            background &= (inter / np.maximum(area, 1e-12)[:, None]).max(axis=1) < BACKGROUND
        kept: list[int] = []
        for j in np.flatnonzero(background)[np.argsort(-p_score[background], kind="stable")].tolist():
            if kept and float(box_iou(p_box[j], p_box[kept]).max()) >= FOREGROUND:
                continue  # the same unlabelled object, predicted as another class too
            kept.append(j)
            out.append(
                Candidate(
                    "missing_box",
                    iid,
                    files[iid],
                    float(p_score[j]),
                    None,
                    names.get(int(p_cat[j])),
                    None,
                    None,
                    _xywh(p_box[j]),
                    None,
                )
            )
    return out


def _pred_probs(
    preds: list[dict[str, Any]], categories: dict[int, str], source: str
) -> tuple[dict[int, np.ndarray], list[int], bool]:
    """Each image's class probabilities (columns: ``cats``), and whether any row had to be
    normalized to sum to 1."""
    by_name = {n: c for c, n in categories.items()}
    cats = sorted(categories)
    col = {c: i for i, c in enumerate(cats)}
    rows: dict[int, np.ndarray] = {}
    normalized = False
    for i, p in enumerate(preds):
        scores = p.get("scores") if isinstance(p, dict) else None
        if not isinstance(scores, dict):
            raise DataError(
                f"{source}: prediction {i} has no 'scores' (every class's score); confident learning "
                "needs the whole distribution, not just the top class",
                source=source,
                hint="dataforge predict writes 'scores' for classifiers",
            )
        iid = p.get("image_id")
        if iid in rows:
            raise DataError(f"{source}: prediction {i}: a second prediction for image {iid}", source=source)
        row = np.zeros(len(cats), dtype=np.float64)
        for key, s in scores.items():
            cid = category_of(key, by_name)
            if cid not in col:
                raise DataError(f"{source}: prediction {i}: unknown category {key!r}", source=source)
            if not isinstance(s, (int, float)) or isinstance(s, bool) or not np.isfinite(s) or s < 0:
                raise DataError(
                    f"{source}: prediction {i}: score of {key!r} must be a number >= 0, found {s!r}",
                    source=source,
                )
            row[col[cid]] = float(s)
        total = row.sum()
        if total <= 0:
            raise DataError(f"{source}: prediction {i}: every class scores 0", source=source)
        if abs(total - 1) > 1e-3:
            normalized = True
        rows[int(iid)] = row / total  # type: ignore[arg-type]
    return rows, cats, normalized


def classification_candidates(
    gt: dict[str, Any], preds: list[dict[str, Any]], source: str, method: str = "prune_by_noise_rate"
) -> tuple[list[Candidate], dict[str, int], dict[str, Any]]:
    """Confident-learning candidates (cleanlab), the images skipped and why, and notes."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if method not in METHODS:
        raise UsageError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    rows, cats, normalized = _pred_probs(preds, names, source)
    col = {c: i for i, c in enumerate(cats)}
    skipped = {"no_prediction": 0, "no_label": 0, "several_labels": 0}
    ids: list[int] = []
    labels: list[int] = []
    for img in gt["images"]:
        given = img.get("labels") or []
        if not given:
            skipped["no_label"] += 1
        elif len(given) > 1:
            skipped["several_labels"] += 1
        elif int(img["id"]) not in rows:
            skipped["no_prediction"] += 1
        else:
            ids.append(int(img["id"]))
            labels.append(col[int(given[0])])
    if len(ids) < 2:
        raise DataError(
            f"{source}: {len(ids)} labelled images with a prediction; confident learning needs more"
        )
    # classes nobody is labelled with (or predicted as) carry no information and upset cleanlab
    present = sorted(set(labels) | {int(np.argmax(rows[i])) for i in ids})
    remap = {c: k for k, c in enumerate(present)}
    pp = np.stack([rows[i][present] for i in ids])
    pp = pp / np.maximum(pp.sum(axis=1, keepdims=True), 1e-12)
    y = np.array([remap[c] for c in labels], dtype=np.int64)
    flagged = find_label_issues(y, pp, filter_by=method, n_jobs=1)
    quality = get_label_quality_scores(y, pp, method="self_confidence")
    files = {int(img["id"]): str(img["file_name"]) for img in gt["images"]}
    out = []
    for k in np.flatnonzero(flagged).tolist():
        top = present[int(np.argmax(pp[k]))]
        out.append(
            Candidate(
                "label",
                ids[k],
                files[ids[k]],
                round(1.0 - float(quality[k]), 6),
                names[cats[labels[k]]],
                names[cats[top]],
            )
        )
    notes = {"method": method, "scored_images": len(ids), "normalized_scores": normalized}
    return out, {k: v for k, v in skipped.items() if v}, notes


def find_mislabels(
    store_path: Path,
    preds: list[dict[str, Any]],
    *,
    source: str = "predictions",
    split: str | None = None,
    where: str | None = None,
    min_score: float = 0.5,
    loose_iou: float = FOREGROUND,
    method: str = "prune_by_noise_rate",
    kinds: Sequence[str] | None = None,
    top: int | None = None,
) -> MislabelReport:
    """Label-error candidates of the selected images, ranked (most likely first), from ``preds``
    (a loaded predictions file; ``source`` names it in errors and the report)."""
    from dataforge.evaluation.predictions import check_detections, is_classification
    from dataforge.evaluation.run import ground_truth_from_store
    from dataforge.masks import rle_bbox

    if not 0 <= min_score <= 1:
        raise UsageError(f"--min-score {min_score}: a score in [0, 1]")
    if not BACKGROUND < loose_iou <= 1:
        raise UsageError(f"--loose-iou {loose_iou}: an IoU in ({BACKGROUND}, 1]")
    if top is not None and top < 1:
        raise UsageError(f"--top {top}: at least 1")
    wanted = set(kinds or KINDS)
    if wanted - set(KINDS):
        raise UsageError(f"--kind {sorted(wanted - set(KINDS))}: choose from {', '.join(KINDS)}")
    gt, store_ids = ground_truth_from_store(store_path, split, where)
    name = Path(source).name
    selected = {int(img["id"]) for img in gt["images"]}
    settings: dict[str, Any] = {"predictions": source, "split": split, "where": where}
    if is_classification(preds):
        unknown = [p.get("image_id") for p in preds if p.get("image_id") not in store_ids]
        if unknown:
            raise DataError(
                f"{name}: {len(unknown)} predictions for images not in the store "
                f"(first: {unknown[0]!r}); is it a predictions file for another store?"
            )
        inside = [p for p in preds if p["image_id"] in selected]
        found, skipped, notes = classification_candidates(gt, inside, name, method)
        settings.update(notes)
        task, looked = "classification", notes["scored_images"]
    else:
        checked = check_detections(preds, gt, name, store_ids)
        boxed = [p if "bbox" in p else {**p, "bbox": rle_bbox(p["segmentation"])} for p in checked]
        found = detection_candidates(gt, boxed, min_score=min_score, loose_iou=loose_iou)
        predicted = {int(p["image_id"]) for p in boxed}
        skipped = {"no_prediction": len(selected - predicted)} if selected - predicted else {}
        settings.update(
            min_score=min_score, loose_iou=loose_iou, foreground_iou=FOREGROUND, background_iou=BACKGROUND
        )
        task, looked = "detection", len(selected)
    found = [c for c in found if c.kind in wanted]
    found.sort(key=lambda c: (-c.score, c.image_id, c.kind))
    counts = {k: sum(1 for c in found if c.kind == k) for k in KINDS if any(c.kind == k for c in found)}
    if top is not None:
        found = found[:top]
    settings["top"] = top
    return MislabelReport(task, looked, found, settings, counts, skipped)


def tag_candidates(store_path: Path, report: MislabelReport, tag: str) -> int:
    """Tag each candidate's image ``tag`` and ``tag:kind``; returns how many images were tagged."""
    from dataforge.store import Store
    from dataforge.store.store import check_tag

    check_tag(tag)
    by_kind: dict[str, set[int]] = {}
    for c in report.candidates:
        by_kind.setdefault(c.kind, set()).add(c.image_id)
    every = sorted({i for ids in by_kind.values() for i in ids})
    with Store.edit(store_path, "mislabels-tag", details={"tag": tag, "images": len(every)}) as s:
        for kind, ids in by_kind.items():
            s.add_tags(sorted(ids), [tag, f"{tag}:{kind}"])
    return len(every)
