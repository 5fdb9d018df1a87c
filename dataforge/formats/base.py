"""What a format plugin provides, and the batch an importer hands to the store.

A reader only parses: it turns its files into an :class:`ImportBatch` (COCO-shaped dicts plus
the directory that image file names resolve against). Every check that does not depend on the
format (ids, references, boxes, paths, image files) happens once, in ``dataforge.ingest``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, Protocol, runtime_checkable

from dataforge.errors import DataError

if TYPE_CHECKING:
    from dataforge.store import Store

OnError = Literal["fail", "skip"]


class Embedded(NamedTuple):
    """An image inside a container file: ``length`` bytes at ``offset`` of ``path``, which the
    reader has already probed (``width``, ``height``; it is a complete image) and hashed."""

    path: str
    offset: int
    length: int
    width: int
    height: int
    sha256: str


@dataclass
class ImportBatch:
    """COCO-shaped records from one source.

    ``images``: dicts with ``id`` and ``file_name`` (relative to ``images_root``) and any extra
    fields; ``width``/``height`` if the source states them (they are checked, not trusted).
    ``annotations``: dicts with ``id``, ``image_id``, ``category_id``, ``bbox`` (COCO xywh,
    absolute pixels) and any extra fields. ``categories``: dicts with ``id`` and ``name``.

    Optional image keys a reader may set (never stored): ``_src``, the path to read relative to
    ``images_root`` when it differs from ``file_name`` (the name in the store); ``_bytes``, the
    encoded image when the source embeds it; or ``_embedded``, an :class:`Embedded` that says where
    in a container file the image lies (TFRecord: the bytes are not held in memory). ``labels``
    (stored) lists image-level category ids, for classification.

    Optional annotation keys: ``_polygon_norm`` (a flat normalized polygon) and ``_keypoints_norm``
    (normalized ``x, y, v`` triplets), made absolute with the box; ``_bbox_norm``,
    ``["cxcywh" | "xyxy", [4 numbers]]`` normalized to
    the image size, converted to ``bbox`` once the real size is known (YOLO, TFRecord);
    ``_where``, the place to name in messages (``"labels/a.txt:3"``). Any record may carry
    ``_problem``, ``[reason, message]``: the reader found it bad, and the error policy decides.
    Set ``private_keys`` when records carry ``_`` keys.
    """

    format: str
    source: str
    images_root: Path
    images: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    licenses: list[dict[str, Any]] = field(default_factory=list)
    #: things the reader noticed that are not errors (a split folder that does not exist, ...)
    warnings: list[str] = field(default_factory=list)
    #: True when records carry the private ``_`` keys below (they are stripped before storing)
    private_keys: bool = False
    #: what the source holds that the reader could not carry, ``"what (why)"`` -> count
    dropped: dict[str, int] = field(default_factory=dict)
    #: what the reader could carry only approximately, ``"what (how)"`` -> count
    approximated: dict[str, int] = field(default_factory=dict)


class RecordScan(Protocol):
    """What a reader of record files with embedded images (TFRecord) knows before parsing: how many
    records there are, and how to parse any range of them. ``dataforge.ingest.direct`` then parses
    the ranges in parallel processes and writes each image into the store from the process that
    parsed it. A format offers this by being :class:`EmbedsImages`.
    """

    format: str
    source: str
    images_root: Path
    #: the number of records (images)
    n: int
    #: the categories, when known before parsing (a label map); None makes the import general
    categories: list[dict[str, Any]] | None
    #: False when the scan already found something the general import must report (a damaged file)
    direct: bool

    def parse_range(self, start: int, stop: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Records ``start..stop-1`` as (images, annotations) in :class:`ImportBatch` form: image
        ``id`` is the record number + 1, images as :class:`Embedded` with their size and hash;
        annotation ids count from 1 within the range, boxes absolute."""
        ...

    def batch(self, parts: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> ImportBatch:
        """The batch of all records, from the parts :meth:`parse_range` made of consecutive ranges."""
        ...


@runtime_checkable
class EmbedsImages(Protocol):
    """A format whose files hold the images themselves (TFRecord; a tar or a zip could be one):
    beside ``read`` it offers ``scan``, and ``dataforge import`` then takes the direct path
    (``dataforge.ingest.direct``), which parses, checks and copies the images out of the files in
    parallel processes without holding them in memory. ``--images`` is where the images of records
    that only name them are (some exporters write file names alone)."""

    def scan(self, path: Path, **options: Any) -> RecordScan:
        """Every record's place in ``path``, from what is cheap to read (headers, an index)."""
        ...


@dataclass
class Skipped:
    kind: str  # "image" | "annotation" | "category"
    id: Any
    reason: str
    message: str


class ErrorPolicy:
    """``fail``: the first problem raises (and the caller rolls back). ``skip``: record and go on."""

    def __init__(self, mode: OnError, source: str) -> None:
        if mode not in ("fail", "skip"):
            raise ValueError(mode)
        self.mode = mode
        self.source = source
        self.skipped: list[Skipped] = []
        #: ids of images skipped so far, so their annotations can say why they are skipped too
        self.skipped_image_ids: set[Any] = set()

    def problem(
        self, kind: str, item_id: Any, reason: str, message: str, error: type[DataError] = DataError
    ) -> None:
        if self.mode == "fail":
            raise error(
                f"{self.source}: {message}",
                source=self.source,
                item=f"{kind} {item_id}",
                reason=reason,
                hint="fix the file, or re-run with --on-error skip to skip such items and get a report",
            )
        self.skipped.append(Skipped(kind, item_id, reason, message))
        if kind == "image" and reason not in ("unknown category", "bad labels"):
            self.skipped_image_ids.add(item_id)


@dataclass
class ExportResult:
    out: Path
    images: int
    annotations: int
    files: list[Path] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: what the format could only write approximately, by kind (e.g. RLE masks traced as polygons)
    approximated: dict[str, int] = field(default_factory=dict)
    #: what it wrote as it is, by label type (boxes, masks, keypoints, semantic regions, image labels)
    kept: dict[str, int] = field(default_factory=dict)
    #: store category id -> the format's own id or index (COCO id, YOLO index, label map id), where
    #: the format numbers categories; written to ``categories.json`` beside the export
    category_ids: dict[int, Any] = field(default_factory=dict)


@runtime_checkable
class DatasetFormat(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    can_import: ClassVar[bool]
    can_export: ClassVar[bool]

    def detect(self, path: Path) -> bool:
        """True if ``path`` looks like this format (cheap: names and first bytes only)."""
        ...

    def read(self, path: Path, *, images: Path | None = None, **options: Any) -> ImportBatch:
        """Parse ``path`` into a batch. Raises ``DataError`` for files it cannot parse at all."""
        ...

    def export(self, store: Store, out: Path, *, image_ids: list[int], **options: Any) -> ExportResult:
        """Write the given images of ``store`` to ``out``."""
        ...
