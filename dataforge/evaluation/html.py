"""``report.html``: one self-contained page (plots embedded as data URIs), with the PNGs beside it.

Detection: the 12 COCO numbers and VOC AP50, per-class AP bars, PR curves, the confusion-matrix
heatmap, the IoU distribution of matched pairs, and the worst images (with boxes, masks and
keypoints drawn when the images are on this machine). Masks and keypoints: their COCO numbers,
per class, and for keypoints the pixel error per point. Semantic: mIoU and the other pixel
numbers, IoU per class, the pixel confusion heatmap, the worst images beside their true and
predicted class maps. Classification: accuracy/top-k, per-class table, confusion heatmap.
A small script at the end counts the images the browser rendered into ``#render-check`` (the
browser test reads it).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from dataforge.boxes import xywh_to_xyxy_floats
from dataforge.evaluation.detection import STAT_NAMES

MAX_CLASSES_IN_PLOTS = 30


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, name: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    (out / name).write_bytes(buf.getvalue())
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _class_bars(values: list[tuple[str, float]], out: Path, name: str, xlabel: str, title: str) -> str:
    """A horizontal bar per class, best at the top (at most MAX_CLASSES_IN_PLOTS of the best)."""
    plt = _plt()
    rows = sorted(values, key=lambda r: r[1])[-MAX_CLASSES_IN_PLOTS:]
    fig, ax = plt.subplots(figsize=(7, 0.3 * max(len(rows), 3) + 1))
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#4878cf")
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _save(fig, out, name)


def _ap_bars(per_class: list[dict[str, Any]], out: Path) -> str:
    values = [(c["name"], c["AP"]) for c in per_class if c["AP"] > -1]
    return _class_bars(values, out, "ap_per_class.png", "AP@[.5:.95]", "AP per class")


def _pr_curves(curves: dict[str, dict[str, list[float]]], out: Path, name: str = "pr_curves.png") -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    for label, c in list(curves.items())[:10]:
        ax.plot(c["recall"], c["precision_iou50"], label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (IoU 0.5)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("PR curves at IoU 0.5 (COCO 101-point)")
    if curves:
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, out, name)


def _heatmap(matrix: list[list[float]], labels: list[str], out: Path, name: str, title: str) -> str:
    import numpy as np

    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    if len(labels) > MAX_CLASSES_IN_PLOTS:  # keep the busiest rows/columns readable
        keep = np.argsort(-m.sum(axis=1))[:MAX_CLASSES_IN_PLOTS]
        keep.sort()
        m, labels = m[np.ix_(keep, keep)], [labels[i] for i in keep]
    size = 0.35 * len(labels) + 2
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1e-9, float(m.max())))
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, out, name)


def _iou_hist(ious: dict[str, Any], out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    edges = ious["bin_edges"]
    ax.bar(
        edges[:-1],
        ious["histogram"] or [0] * (len(edges) - 1),
        width=edges[1] - edges[0],
        align="edge",
        color="#6acc65",
        edgecolor="white",
    )
    ax.set_xlabel("IoU of matched pairs")
    ax.set_ylabel("pairs")
    return _save(fig, out, "iou_histogram.png")


def _thumbnail(
    images_dir: Path, img: dict[str, Any], gt_anns: list[dict[str, Any]], preds: list[dict[str, Any]]
) -> str | None:
    """The image with its ground truth (green) and predictions scoring >= 0.5 (red): boxes, masks
    tinted, keypoints as dots."""
    import numpy as np
    from PIL import Image, ImageDraw

    from dataforge.masks import decode

    path = images_dir / str(img.get("file_name"))
    if not path.is_file():
        return None
    shown = [p for p in preds if p.get("score", 1.0) >= 0.5]
    with Image.open(path) as opened:
        im = opened.convert("RGB")
        pixels = np.asarray(im).copy()
        w, h = im.size
        for anns, colour in ((gt_anns, (0, 200, 0)), (shown, (230, 30, 30))):
            for a in anns:
                if a.get("segmentation") and not a.get("semantic"):
                    m = decode(a["segmentation"], h, w)
                    pixels[m] = (0.55 * pixels[m] + 0.45 * np.array(colour)).astype(np.uint8)
        im = Image.fromarray(pixels)
        k = max(1, round(240 / max(w, h)))  # small images drawn larger, so a point is not a blot
        if k > 1:
            im = im.resize((w * k, h * k), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(im)
        for anns, colour, predicted in ((gt_anns, (0, 200, 0), False), (shown, (230, 30, 30), True)):
            for a in anns:
                if a.get("bbox") and not a.get("semantic"):
                    draw.rectangle([k * v for v in xywh_to_xyxy_floats(a["bbox"])], outline=colour, width=2)
                kps = a.get("keypoints") or []
                for x, y, v in zip(kps[0::3], kps[1::3], kps[2::3], strict=True):
                    if v > 0 or predicted:  # a prediction's third number is a score, not v
                        draw.ellipse([k * x - 3, k * y - 3, k * x + 3, k * y + 3], fill=colour)
        im.thumbnail((320, 320))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _label_thumbnails(
    images_dir: Path, img: dict[str, Any], truth: list[dict[str, Any]], preds: list[dict[str, Any]]
) -> str | None:
    """The image, its true class map and the predicted one, side by side (classes in VOC colours)."""
    import numpy as np
    from PIL import Image

    from dataforge.masks import decode, voc_palette

    path = images_dir / str(img.get("file_name"))
    if not path.is_file():
        return None
    palette = np.asarray(voc_palette(), dtype=np.uint8).reshape(-1, 3)
    with Image.open(path) as opened:
        im = np.asarray(opened.convert("RGB"))
    h, w = im.shape[:2]
    panels = [im]
    for regions in (truth, preds):
        panel = np.full((h, w, 3), 255, np.uint8)  # white: void, or no prediction
        for r in regions:
            panel[decode(r["segmentation"], h, w)] = palette[1 + r["_index"] % 254]
        panels.append(panel)
    out = Image.fromarray(np.concatenate(panels, axis=1))
    out.thumbnail((720, 240))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}
img.plot{max-width:100%;border:1px solid #eee;margin:0.5em 0}.thumbs{display:flex;flex-wrap:wrap;gap:12px}
.thumbs figure{margin:0}.note{color:#666;font-size:0.9em}"""

CHECK = """<div id="render-check">pending</div><script>
window.addEventListener('load',function(){var im=document.images,ok=0;for(var i=0;i<im.length;i++){
if(im[i].complete&&im[i].naturalWidth>0)ok++;}document.getElementById('render-check').textContent=
ok+'/'+im.length+' images rendered';});</script>"""


def write_html(
    report: dict[str, Any],
    out: Path,
    *,
    gt: dict[str, Any] | None = None,
    predictions: list[dict[str, Any]] | None = None,
    images_dir: Path | None = None,
    compared: list[dict[str, Any]] | None = None,
) -> Path:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>dataforge evaluation</title>"
        f"<style>{CSS}</style></head><body><h1>dataforge evaluation: {html.escape(report['task'])}</h1>"
    ]
    g = report["ground_truth"]
    source = g["store"] or g["file"]
    parts.append(
        f"<p class='note'>ground truth {html.escape(str(source))} ({g['images']} images"
        f"{', split ' + html.escape(g['split']) if g.get('split') else ''}); predictions "
        f"{html.escape(report['predictions']['file'])} ({report['predictions']['count']}); "
        f"created {report['created']} by dataforge {report['dataforge_version']}</p>"
    )
    if "detection" in report:
        d = report["detection"]
        parts.append(
            "<h2>Summary</h2>"
            + _table(
                [[n, v] for n, v in zip(STAT_NAMES, d["coco_stats"], strict=True)],
                ["COCO (pycocotools order)", "value"],
            )
        )
        voc = d["voc"]
        parts.append(
            f"<p>VOC AP{int(voc['iou_threshold'] * 100)}: all-point {voc['mAP50_all_point']:.4f}, "
            f"11-point {voc['mAP50_11_point']:.4f}</p>"
        )
        parts.append(
            "<h2>Per class</h2>"
            + _table(
                [
                    [c["name"], c["AP"], c["AP50"], c["AR100"], voc["per_class"][c["name"]]["AP50_all_point"]]
                    for c in d["per_class"]
                ],
                ["class", "AP", "AP50", "AR100", "VOC AP50"],
            )
        )
        parts.append(f"<img class='plot' alt='AP per class' src='{_ap_bars(d['per_class'], out)}'>")
        parts.append(
            "<h2>PR curves</h2>"
            + f"<img class='plot' alt='PR curves' src='{_pr_curves(d['pr_curves'], out)}'>"
        )
        c = d["confusion"]
        parts.append(
            f"<h2>Confusion matrix</h2><p class='note'>rows ground truth, columns predictions, IoU "
            f"&ge; {c['iou_threshold']}, score &ge; {c['score_threshold']}, class-agnostic matching; "
            "normalized per row</p>"
        )
        parts.append(
            f"<img class='plot' alt='confusion matrix' src='"
            f"{_heatmap(c['normalized_by_row'], c['labels'], out, 'confusion.png', 'confusion (row-normalized)')}'>"
        )
        parts.append(
            _table(
                [[p["name"], p["TP"], p["FP"], p["FN"]] for p in c["per_class"]], ["class", "TP", "FP", "FN"]
            )
        )
        parts.append(
            "<h2>IoU of matched pairs</h2>"
            + f"<img class='plot' alt='IoU histogram' src='{_iou_hist(d['iou_of_matches'], out)}'>"
        )
        if "bootstrap" in d:
            parts.append(_bootstrap_section(d["bootstrap"]))
        if "comparison" in report:
            parts.append(_comparison_section(report["comparison"], gt, predictions, compared, images_dir))
        if "errors" in d:
            parts.append(_errors_section(d["errors"], out, "boxes", "errors_boxes.png"))
        if isinstance(d.get("metrics", {}).get("operating_points"), dict):
            parts.append(_operating_section(d, out))
        if isinstance(d.get("metrics", {}).get("calibration"), dict):
            parts.append(_calibration_section(d["metrics"]["calibration"], out, "calibration_detection.png"))
        parts.append(_worst(d["worst_images"], gt, predictions, images_dir))
        parts.append("<h2>Conventions</h2>" + _table([[k, v] for k, v in d["conventions"].items()], ["", ""]))
    if "segmentation" in report:
        parts.append(_coco_section("Masks (COCO segm)", report["segmentation"], STAT_NAMES, out, "segm"))
        if "errors" in report["segmentation"]:
            parts.append(_errors_section(report["segmentation"]["errors"], out, "masks", "errors_masks.png"))
        if "detection" not in report:
            parts.append(_worst_by_misses(gt, predictions, images_dir))
    if "keypoints" in report:
        from dataforge.evaluation.instances import KEYPOINT_STAT_NAMES

        k = report["keypoints"]
        parts.append(_coco_section("Keypoints (COCO OKS)", k, KEYPOINT_STAT_NAMES, out, "keypoints"))
        parts.append(
            "<h3>Error per point</h3>"
            + _table(
                [[r["name"], r["matched"], r["mean_px"], r["median_px"]] for r in k["per_keypoint"]],
                ["point", "matched (OKS >= 0.5)", "mean px", "median px"],
            )
        )
        if "detection" not in report:
            parts.append(_worst_by_misses(gt, predictions, images_dir))
    if "semantic" in report:
        parts.append(_semantic_section(report["semantic"], out, gt, predictions, images_dir))
    if "regression" in report:
        parts.append(_regression_section(report["regression"], gt, predictions, images_dir))
    if "classification" in report:
        c = report["classification"]
        parts.append(
            f"<h2>Summary</h2><p>accuracy {c['accuracy']:.4f}, "
            + ", ".join(f"{k} {v:.4f}" for k, v in c["top_k"].items())
            + f", macro F1 {c['macro_f1']:.4f}</p>"
        )
        parts.append(
            _table(
                [[p["name"], p["precision"], p["recall"], p["f1"], p["support"]] for p in c["per_class"]],
                ["class", "precision", "recall", "F1", "support"],
            )
        )
        cm = c["confusion"]
        parts.append(
            f"<img class='plot' alt='confusion matrix' src='"
            f"{_heatmap(cm['normalized_by_row'], cm['labels'], out, 'confusion.png', 'confusion (row-normalized)')}'>"
        )
        if isinstance(c.get("metrics", {}).get("calibration"), dict):
            parts.append(
                _calibration_section(c["metrics"]["calibration"], out, "calibration_classification.png")
            )
    parts.append(CHECK + "</body></html>")
    path = out / "report.html"
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _ci(c: list[float] | None) -> str:
    return "-" if c is None else f"[{c[0]:.4f}, {c[1]:.4f}]"


def _bootstrap_section(b: dict[str, Any]) -> str:
    rows = [
        ["AP", b["AP"]["value"], _ci(b["AP"]["ci95"])],
        ["AP50", b["AP50"]["value"], _ci(b["AP50"]["ci95"])],
    ]
    rows += [[f"AP {c['name']}", c["AP"], _ci(c["ci95"])] for c in b["per_class"]]
    return (
        f"<h2>How sure: 95% intervals</h2><p class='note'>{b['resamples']} bootstrap resamples of the "
        f"images (seed {b['seed']}), percentile intervals; COCOeval's matching (area all, 100 "
        "detections)</p>" + _table(rows, ["", "value", "95% interval"])
    )


def _comparison_section(
    c: dict[str, Any],
    gt: dict[str, Any] | None,
    a: list[dict[str, Any]] | None,
    b: list[dict[str, Any]] | None,
    images_dir: Path | None,
) -> str:
    rows = [
        [k, c[k]["A"], c[k]["B"], c[k]["delta"], _ci(c[k]["ci95"]), c[k]["B_better"]] for k in ("AP", "AP50")
    ]
    rows += [
        [f"AP {r['name']}", r["A"], r["B"], r["delta"], _ci(r["ci95"]), r["B_better"]] for r in c["per_class"]
    ]
    parts = [
        f"<h2>A against B</h2><p class='note'>A: these predictions; B: {html.escape(str(c['B']))}. "
        f"{c['resamples']} paired resamples of the images (seed {c['seed']}): the same images for "
        "both; B better: the share of resamples where B's value is higher</p>",
        _table(rows, ["", "A", "B", "B - A", "95% interval", "B better"]),
    ]
    if gt is None or images_dir is None or a is None or b is None:
        return "".join(parts)
    by_id = {img["id"]: img for img in gt["images"]}
    for key, title in (("gained", "where B did best"), ("lost", "where B did worst")):
        figs = []
        for r in c["images"][key][:6]:
            img = by_id.get(r["image_id"])
            g = [x for x in gt["annotations"] if x["image_id"] == r["image_id"]]
            srcs = [
                _thumbnail(images_dir, img, g, [p for p in preds if p["image_id"] == r["image_id"]])
                if img
                else None
                for preds in (a, b)
            ]
            if all(srcs):
                figs.append(
                    f"<figure><img alt='A' src='{srcs[0]}'><img alt='B' src='{srcs[1]}'><figcaption>"
                    f"{html.escape(str(r['file_name']))}: errors A {r['errors_A']}, B {r['errors_B']}"
                    "</figcaption></figure>"
                )
        if figs:
            parts.append(
                f"<h3>{title} (A left, B right; false positives + missed at each set's best-F1 "
                f"threshold)</h3><div class='thumbs'>{''.join(figs)}</div>"
            )
    return "".join(parts)


def _calibration_section(c: dict[str, Any], out: Path, name: str) -> str:
    """Reliability diagram: per score bin, the share right against the mean score."""
    if not c.get("bins") or c.get("ece") is None:
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    full = [b for b in c["bins"] if b["count"]]
    ax.plot([0, 1], [0, 1], "--", color="#999", label="calibrated")
    ax.bar(
        [(b["low"] + b["high"]) / 2 for b in full],
        [b["accuracy"] for b in full],
        width=0.09,
        color="#2e86c1",
        alpha=0.8,
        label="share right",
    )
    ax.plot(
        [b["mean_score"] for b in full], [b["accuracy"] for b in full], "o", color="#c0392b", label="bin mean"
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("score")
    ax.set_ylabel("share right")
    ax.legend(loc="upper left", fontsize=8)
    src = _save(fig, out, name)
    rows = [
        [f"{b['low']:.1f}-{b['high']:.1f}", b["count"], b["mean_score"], b["accuracy"]] for b in c["bins"]
    ]
    return (
        f"<h2>Calibration</h2><p class='note'>right: {html.escape(str(c.get('right_means', '')))}; "
        f"expected calibration error {c['ece']:.4f}, largest bin gap {c['mce']:.4f}, "
        f"{c['predictions']} predictions</p><img class='plot' alt='reliability diagram' src='{src}'>"
        + _table(rows, ["score bin", "predictions", "mean score", "share right"])
    )


def _operating_section(d: dict[str, Any], out: Path) -> str:
    """Per class: the best-F1 threshold and what it gives, precision at fixed recalls; the
    confusion matrix of the predictions the recommended thresholds keep."""
    ops = d["metrics"]["operating_points"]
    levels = [str(r) for r in ops["recall_levels"]]
    rows = [
        [
            c["name"],
            c["score_threshold"],
            c["precision"],
            c["recall"],
            c["f1"],
            *(c["precision_at_recall"][r] for r in levels),
        ]
        for c in [*ops["per_class"], {"name": "(all)", **ops["overall"]}]
    ]
    parts = [
        f"<h2>Operating points</h2><p class='note'>IoU &ge; {ops['iou_threshold']}; threshold: the score "
        "with the highest F1 for the class (thresholds.json holds them for deployment); P@R: the best "
        "precision at a threshold reaching that recall</p>",
        _table(rows, ["class", "threshold", "precision", "recall", "F1", *(f"P@R{r}" for r in levels)]),
    ]
    c = d.get("confusion_at_thresholds")
    if c:
        parts.append(
            f"<h3>Confusion at the recommended thresholds</h3><img class='plot' alt='confusion at thresholds' src='"
            f"{_heatmap(c['normalized_by_row'], c['labels'], out, 'confusion_thresholds.png', 'at the thresholds (row-normalized)')}'>"
            + _table(
                [[p["name"], p["TP"], p["FP"], p["FN"]] for p in c["per_class"]], ["class", "TP", "FP", "FN"]
            )
        )
    return "".join(parts)


def _errors_section(e: dict[str, Any], out: Path, what: str, name: str) -> str:
    """TIDE's breakdown: dAP per error type (bars), counts, and per class."""
    from dataforge.evaluation.errors import ERROR_TYPES, SPECIAL

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    keys = [*ERROR_TYPES, *SPECIAL]
    ax.barh(keys[::-1], [e["dAP"][k] for k in keys[::-1]], color=["#888"] * 2 + ["#c0392b"] * 6)
    ax.set_xlabel("dAP (AP50 gained if fixed)")
    ax.set_title(f"errors of the {what} (TIDE)")
    src = _save(fig, out, name)
    s = e["settings"]
    note = (
        f"foreground IoU {s['foreground_iou']}, background IoU {s['background_iou']}, at most "
        f"{s['max_dets_per_image']} predictions per image; AP50 here is TIDE's ({e['ap']:.4f}): "
        + html.escape(s["ap"])
    )
    overall = _table([[k, e["dAP"][k], e["counts"].get(k, "")] for k in keys], ["error", "dAP", "count"])
    per_class = _table(
        [[c["name"], c["ap"], *(c["dAP"][k] for k in ERROR_TYPES)] for c in e["per_class"]],
        ["class", "AP50", *(f"dAP {k}" for k in ERROR_TYPES)],
    )
    return (
        f"<h2>Errors of the {what}</h2><p class='note'>{note}</p><img class='plot' alt='errors' "
        f"src='{src}'>{overall}<h3>Per class</h3>{per_class}"
    )


def _coco_section(title: str, r: dict[str, Any], names: tuple[str, ...], out: Path, tag: str) -> str:
    parts = [
        f"<h2>{html.escape(title)}</h2>"
        + _table(
            [[n, v] for n, v in zip(names, r["coco_stats"], strict=True)],
            ["COCO (pycocotools order)", "value"],
        ),
        _table(
            [[c["name"], c["AP"], c["AP50"], c["AR100"]] for c in r["per_class"]],
            ["class", "AP", "AP50", "AR"],
        ),
    ]
    if r["pr_curves"]:
        src = _pr_curves(r["pr_curves"], out, f"pr_curves_{tag}.png")
        parts.append(f"<img class='plot' alt='PR curves {tag}' src='{src}'>")
    parts.append(_table([[k, v] for k, v in r["conventions"].items()], ["", ""]))
    return "".join(parts)


def _worst_by_misses(
    gt: dict[str, Any] | None, predictions: list[dict[str, Any]] | None, images_dir: Path | None
) -> str:
    """Without box results, the images with the most ground-truth objects minus confident
    predictions (either way), drawn."""
    if gt is None:
        return ""
    counts: dict[int, list[int]] = {img["id"]: [0, 0] for img in gt["images"]}
    for a in gt["annotations"]:
        if not a.get("semantic") and a["image_id"] in counts:
            counts[a["image_id"]][0] += 1
    for p in predictions or []:
        if p.get("score", 0) >= 0.5 and p["image_id"] in counts:
            counts[p["image_id"]][1] += 1
    files = {img["id"]: img.get("file_name") for img in gt["images"]}
    worst = sorted(counts.items(), key=lambda kv: (-abs(kv[1][0] - kv[1][1]), kv[0]))[:8]
    rows = [
        {"image_id": i, "file_name": files[i], "false_positives": max(0, p - g), "missed": max(0, g - p)}
        for i, (g, p) in worst
    ]
    return _worst(rows, gt, predictions, images_dir, note="objects minus confident predictions")


def _semantic_section(
    r: dict[str, Any],
    out: Path,
    gt: dict[str, Any] | None,
    predictions: list[dict[str, Any]] | None,
    images_dir: Path | None,
) -> str:
    parts = [
        "<h2>Semantic segmentation</h2>"
        + _table(
            [
                ["mIoU", r["mIoU"]],
                ["mean accuracy", r["mean_accuracy"]],
                ["pixel accuracy", r["pixel_accuracy"]],
                ["frequency-weighted IoU", r["frequency_weighted_IoU"]],
                ["images", r["images"]],
                ["counted pixels", r["counted_pixels"]],
            ],
            ["", "value"],
        ),
        _table(
            [
                [
                    c["name"],
                    c["IoU"] if c["IoU"] is not None else "-",
                    c["accuracy"] if c["accuracy"] is not None else "-",
                    c["pixels"],
                ]
                for c in r["per_class"]
            ],
            ["class", "IoU", "accuracy", "pixels"],
        ),
    ]
    values = [(c["name"], c["IoU"]) for c in r["per_class"] if c["IoU"] is not None]
    bars = _class_bars(values, out, "iou_per_class.png", "IoU", "IoU per class")
    parts.append(f"<img class='plot' alt='IoU per class' src='{bars}'>")
    cm = r["confusion"]
    matrix = [[v / max(1, sum(row)) for v in row] for row in cm["matrix"]]
    labels = cm["labels"]
    parts.append(
        "<p class='note'>rows ground truth (void not counted), columns predictions, the last column "
        "pixels no prediction covers; normalized per row</p>"
        f"<img class='plot' alt='pixel confusion matrix' src='"
        f"{_heatmap([row[:-1] for row in matrix], labels, out, 'confusion.png', 'pixel confusion (row-normalized)')}'>"
    )
    parts.append(
        "<h3>Worst images</h3><p class='note'>lowest pixel accuracy; image, true classes, predicted "
        "classes (white: void / nothing predicted)</p>"
        + _table(
            [[w["image_id"], w["file_name"], w["pixel_accuracy"]] for w in r["worst_images"]],
            ["image", "file", "pixel accuracy"],
        )
    )
    if gt is not None and images_dir is not None:
        index = {c["id"]: i for i, c in enumerate(sorted(gt["categories"], key=lambda c: c["id"]))}
        by_id = {img["id"]: img for img in gt["images"]}
        thumbs = []
        for w in r["worst_images"][:6]:
            truth = [
                {**a, "_index": index[a["category_id"]]}
                for a in gt["annotations"]
                if a["image_id"] == w["image_id"] and a.get("semantic")
            ]
            preds = [
                {**p, "_index": index[p["category_id"]]}
                for p in predictions or []
                if p["image_id"] == w["image_id"]
            ]
            src = _label_thumbnails(images_dir, by_id[w["image_id"]], truth, preds)
            if src:
                thumbs.append(_figure(w, src, f"pixel accuracy {w['pixel_accuracy']:.3f}"))
        if thumbs:
            parts.append("<div class='thumbs'>" + "".join(thumbs) + "</div>")
    return "".join(parts)


def _regression_section(
    r: dict[str, Any],
    gt: dict[str, Any] | None,
    predictions: list[dict[str, Any]] | None,
    images_dir: Path | None,
) -> str:
    pck = [k for k in r if k.startswith("PCK@")]
    parts = [
        "<h2>Point regression</h2><p class='note'>Euclidean error of each labelled point; PCK@a: the "
        "share of points within a times the image's longer side (a point without a prediction is a "
        "miss)</p>"
        + _table(
            [
                ["images", r["images"]],
                ["labelled points", r["points"]],
                ["images without a prediction", r["missing_predictions"]],
                ["mean error (px)", r["mean_error_px"]],
                ["median error (px)", r["median_error_px"]],
                ["mean error / longer side", r["mean_error_relative"]],
                *[[k, r[k]] for k in pck],
            ],
            ["", "value"],
        ),
        _table(
            [
                [
                    p["category"],
                    p["name"],
                    p["points"],
                    p["mean_error_px"],
                    p["median_error_px"],
                    *[p[k] for k in pck],
                ]
                for p in r["per_point"]
            ],
            ["category", "point", "points", "mean px", "median px", *pck],
        ),
    ]
    parts.append(
        "<h3>Worst images</h3><p class='note'>highest mean error; green: truth, red: prediction</p>"
        + _table(
            [[w["image_id"], w["file_name"], w["mean_error_px"]] for w in r["worst_images"]],
            ["image", "file", "mean error px"],
        )
    )
    if gt is not None and images_dir is not None:
        by_id = {img["id"]: img for img in gt["images"]}
        thumbs = []
        for w in r["worst_images"][:8]:
            truth = [
                {"keypoints": a["keypoints"]}
                for a in gt["annotations"]
                if a["image_id"] == w["image_id"] and a.get("keypoints")
            ]
            guess = [
                {"keypoints": p["keypoints"]} for p in predictions or [] if p["image_id"] == w["image_id"]
            ]
            src = _thumbnail(images_dir, by_id[w["image_id"]], truth, guess)
            if src:
                thumbs.append(_figure(w, src, f"mean error {w['mean_error_px']:.2f} px"))
        if thumbs:
            parts.append("<div class='thumbs'>" + "".join(thumbs) + "</div>")
    return "".join(parts)


def _figure(row: dict[str, Any], src: str, caption: str) -> str:
    """One worst image's thumbnail (``row``: its ``image_id`` and ``file_name``) with a caption."""
    return (
        f"<figure><img alt='image {row['image_id']}' src='{src}'><figcaption>"
        f"{html.escape(str(row['file_name']))}: {html.escape(caption)}</figcaption></figure>"
    )


def _worst(
    worst: list[dict[str, Any]],
    gt: dict[str, Any] | None,
    predictions: list[dict[str, Any]] | None,
    images_dir: Path | None,
    note: str = "most false positives (score &ge; 0.5) plus missed objects at the VOC IoU",
) -> str:
    out = [
        f"<h2>Worst images</h2><p class='note'>{note}; green: ground truth, red: predictions with "
        "score &ge; 0.5 (boxes, masks tinted, keypoints as dots)</p>"
    ]
    out.append(
        _table(
            [[w["image_id"], w["file_name"], w["false_positives"], w["missed"]] for w in worst],
            ["image", "file", "false positives", "missed"],
        )
    )
    if gt is None or images_dir is None:
        return "".join(out)
    by_id = {img["id"]: img for img in gt["images"]}
    thumbs = []
    for w in worst[:8]:
        img = by_id.get(w["image_id"])
        if img is None:
            continue
        g = [a for a in gt["annotations"] if a["image_id"] == w["image_id"]]
        p = [q for q in predictions or [] if q["image_id"] == w["image_id"]]
        src = _thumbnail(images_dir, img, g, p)
        if src:
            thumbs.append(_figure(w, src, f"{w['false_positives']} FP, {w['missed']} missed"))
    if thumbs:
        out.append("<div class='thumbs'>" + "".join(thumbs) + "</div>")
    return "".join(out)
