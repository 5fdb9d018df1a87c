"""TFRecord with the TF Object Detection API schema, plus ``label_map.pbtxt``. No TensorFlow needed.

The package: ``framing`` (records and their CRCs), ``example`` (the ``tf.train.Example`` protobuf),
``schema`` (feature names, shard names, label maps), ``reader`` (scan and parse, used by import and
by ``dataforge.training.data.TFRecordDataset``) and ``writer`` (export).

Features read and written: ``image/encoded`` (the image itself), ``image/format``,
``image/filename``, ``image/source_id``, ``image/width``, ``image/height``, ``image/key/sha256``,
``image/object/bbox/{xmin,ymin,xmax,ymax}`` (normalized to the image size),
``image/object/class/label`` (label-map id) and ``image/object/class/text``.

Import takes a ``.tfrecord`` file, a shard pattern's files, or a folder of them; the split comes
from the file name (``train.tfrecord``, ``val.tfrecord-00001-of-00004``) or the folder. Every
record's two CRCs are checked; a damaged record is an error naming the file and record. Category
ids are the label map's ids (``class/text`` names them when there is no label map); an object
whose id is not in the label map (the TF OD API's 0, "unlabelled") is reported.

Export writes ``<split>.tfrecord-0000i-of-0000N`` shards (``--option shards=N``, default 1:
``<split>.tfrecord``) and ``label_map.pbtxt`` with ids 1..K in store category-id order. Boxes are
stored as float32 like every TF OD API writer. Degenerate boxes are not written; they are counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dataforge.formats.base import ExportResult, ImportBatch
from dataforge.formats.tfrecord import reader, writer
from dataforge.formats.tfrecord.reader import TfrecordScan
from dataforge.formats.tfrecord.schema import is_tfrecord, parse_label_map
from dataforge.parallel import map_ranges

if TYPE_CHECKING:
    from dataforge.store import Store

__all__ = ["TfrecordFormat", "TfrecordScan", "is_tfrecord", "parse_label_map"]


class TfrecordFormat:
    name: ClassVar[str] = "tfrecord"
    description: ClassVar[str] = "TFRecord, TF Object Detection API schema + label_map.pbtxt (sharded export)"
    can_import: ClassVar[bool] = True
    can_export: ClassVar[bool] = True

    def detect(self, path: Path) -> bool:
        if path.is_file():
            return is_tfrecord(path)
        return path.is_dir() and any(is_tfrecord(p) for p in list(path.iterdir()) + list(path.glob("*/*")))

    def read(self, path: Path, *, images: Path | None = None, **options: Any) -> ImportBatch:
        scan = self.scan(path, images=images, **options)
        return scan.batch(map_ranges(scan.parse_range, scan.n))

    def scan(self, path: Path, **options: Any) -> TfrecordScan:
        """Every record's place, from the headers alone (see :class:`~dataforge.formats.base.RecordScan`)."""
        return reader.scan(path, **options)

    def export(
        self,
        store: Store,
        out: Path,
        *,
        image_ids: list[int],
        shards: int | str = 1,
        link: bool = False,
        **options: Any,
    ) -> ExportResult:
        return writer.export(store, out, image_ids=image_ids, shards=shards, link=link, **options)
