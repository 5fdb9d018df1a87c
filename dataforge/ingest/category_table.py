"""``dataforge import --categories categories.json``: an export's category table read back, so
that a round trip (export, edit elsewhere, import) gives every category its store id again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dataforge.errors import DataError, UsageError
from dataforge.formats.base import ImportBatch
from dataforge.jsonio import load_json


def load_table(path: Path) -> dict[str, int]:
    """Category name -> store id, from a ``categories.json``; a malformed table is a one-line error."""
    doc = load_json(path, what="category table")
    rows = doc.get("categories") if isinstance(doc, dict) and doc.get("dataforge_categories") else None
    if not isinstance(rows, list):
        raise UsageError(
            f"{path}: not a dataforge category table (an export writes one as categories.json)",
            hint="pass the categories.json of the export these files came from",
        )
    out: dict[str, int] = {}
    ids: set[int] = set()
    for i, r in enumerate(rows):
        if not (isinstance(r, dict) and isinstance(r.get("name"), str) and type(r.get("store_id")) is int):
            raise UsageError(f"{path}: entry {i} needs a name and an integer store_id, found {r!r:.80}")
        if r["name"] in out or r["store_id"] in ids:
            raise UsageError(
                f"{path}: entry {i}: name {r['name']!r} or store_id {r['store_id']} appears twice"
            )
        out[r["name"]] = r["store_id"]
        ids.add(r["store_id"])
    return out


def apply_category_table(batch: ImportBatch, table_path: Path, store_path: Path) -> None:
    """Renumber ``batch``'s categories (by name) to the table's store ids, in place; categories the
    table does not name keep their ids where free, else get new ones. A store that already numbers
    a category otherwise is an error: its ids would shuffle."""
    table = load_table(table_path)
    from dataforge.store import Store

    if Store.is_store(store_path):
        for c in Store.open(store_path).data["categories"]:
            want = table.get(c["name"])
            if want is not None and want != c["id"]:
                raise DataError(
                    f"{store_path}: category {c['name']!r} has id {c['id']} there, but {table_path.name} "
                    f"gives it {want}",
                    hint="import into the store the table was exported from, or into a new store",
                )
            taken = [n for n, i in table.items() if i == c["id"] and n != c["name"]]
            if taken:
                raise DataError(
                    f"{store_path}: id {c['id']} is {c['name']!r} there, but {taken[0]!r} in {table_path.name}",
                    hint="import into the store the table was exported from, or into a new store",
                )
    used = set(table.values())
    next_id = max([*used, *(int(c["id"]) for c in batch.categories if type(c.get("id")) is int), 0]) + 1
    remap: dict[Any, int] = {}
    for c in batch.categories:
        name = c.get("name")
        if name in table:
            remap[c.get("id")] = table[name]
        elif c.get("id") in used or type(c.get("id")) is not int:
            remap[c.get("id")] = next_id
            next_id += 1
        else:
            remap[c.get("id")] = c["id"]
            used.add(c["id"])
    for c in batch.categories:
        c["id"] = remap[c.get("id")]
    for a in batch.annotations:
        if isinstance(a, dict) and a.get("category_id") in remap:
            a["category_id"] = remap[a["category_id"]]
    for img in batch.images:
        if isinstance(img, dict) and isinstance(img.get("labels"), list):
            img["labels"] = [remap.get(c, c) for c in img["labels"]]
