"""``dataforge dedupe`` and ``dataforge leakage``: duplicate images from their pixels alone.

Exact duplicates share their SHA-256 (stored at import). Near duplicates (a re-encoded, resized,
slightly cropped or colour-shifted copy) have perceptual hashes a few bits apart: ``imagehash``'s
pHash (DCT of the 32x32 grey image) and dHash (gradient signs of the 9x8 image), 64 bits each,
computed once per image content and cached in ``<store>/.dataforge-cache/hashes.json`` by SHA-256.

Pairs are found without comparing all pairs: each hash's 64 bits are cut into 16-bit bands, in
order and in three fixed shuffles, and images that agree exactly on a band are candidates
(locality-sensitive hashing); a candidate pair is a near duplicate when its pHash or its dHash
differs in at most ``threshold`` bits. Pairs join into
clusters (union-find). A pair whose hashes differ on every band is missed: the tests measure the
recall on planted copies of each kind.

Semantic near duplicates (the same scene mirrored, re-framed, re-shot) can also come from the user's
own trained classifier (``--embeddings runs/x``): the features its last layer reads, compared by
cosine similarity through a faiss index (mutual nearest neighbours, not all pairs).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataforge.errors import UsageError
from dataforge.jsonio import load_json, write_json
from dataforge.runtime import usable_cores

CACHE = Path(".dataforge-cache") / "hashes.json"


@dataclass
class Cluster:
    image_ids: list[int]
    #: "exact": identical files; "near": perceptual hashes within the threshold; "semantic": joined
    #: (also) by a pair only the embeddings found alike; "group": images sharing a field's value
    #: (``leakage --group-by FIELD``)
    kind: str
    #: the largest pHash / dHash distance (bits) of a pair that joined it (0 for exact)
    distance: int = 0
    #: semantic: the lowest cosine similarity of an embedding pair that joined it
    similarity: float | None = None


@dataclass
class DedupeResult:
    images: int
    clusters: list[Cluster]
    hashed: int  # images hashed now (the rest came from the cache)
    threshold: int
    tagged: int = 0
    #: the FiftyOne dataset written (``--fiftyone``): name, samples, clusters, the saved view
    fiftyone: dict[str, Any] | None = None

    @property
    def duplicates(self) -> int:
        """Images beyond the first of each cluster."""
        return sum(len(c.image_ids) - 1 for c in self.clusters)


def _hash_files(paths: list[str]) -> list[tuple[str, str] | None]:
    import imagehash
    from PIL import Image

    out: list[tuple[str, str] | None] = []
    for p in paths:
        try:
            with Image.open(p) as img:
                img.draft("L", (64, 64))  # JPEG: decode at a fraction of the size (the hashes use 32x32)
                grey = img.convert("L")
                out.append((str(imagehash.phash(grey)), str(imagehash.dhash(grey))))
        except (OSError, ValueError):
            out.append(None)
    return out


def hashes(
    store: Any, images: list[dict[str, Any]], workers: int | None = None
) -> tuple[dict[int, tuple[int, int]], int]:
    """Each image's (pHash, dHash) as ints, from the cache or computed (in ``workers`` processes);
    and how many were computed now."""
    cache_path = store.root / CACHE
    cache: dict[str, list[str]] = load_json(cache_path) if cache_path.is_file() else {}
    todo = [img for img in images if img.get("sha256") not in cache]
    if todo:
        paths = [str(store.images_dir / img["file_name"]) for img in todo]
        n = max(1, min(workers or usable_cores(), 8))
        chunks = [paths[i : i + 256] for i in range(0, len(paths), 256)]
        if n > 1 and len(chunks) > 1:
            with ProcessPoolExecutor(n) as pool:
                results = [h for part in pool.map(_hash_files, chunks) for h in part]
        else:
            results = [h for c in chunks for h in _hash_files(c)]
        for img, found in zip(todo, results, strict=True):
            if found is not None:
                cache[img["sha256"]] = list(found)
        cache_path.parent.mkdir(exist_ok=True)
        write_json(cache_path, cache)
    out = {}
    for img in images:
        kept = cache.get(img.get("sha256", ""))
        if kept is not None:
            out[int(img["id"])] = (int(kept[0], 16), int(kept[1], 16))
    return out, len(todo)


class _Union:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        root = a
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while a != root:  # path compression
            self.parent[a], a = root, self.parent.get(a, a)
        return root

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


#: how the 64 bits of a hash are cut into 16-bit bands: 4 tables (the bits in order, then three
#: fixed shuffles), 4 bands each. A near pair (a few bits apart) agrees on some band of some table
#: unless its differing bits touch all 16 bands; more tables, fewer misses (the tests measure them).
_TABLES = [np.arange(64)] + [np.random.default_rng(seed).permutation(64) for seed in (1, 2, 3)]


def _bands(h: np.ndarray) -> list[np.ndarray]:
    out = []
    for perm in _TABLES:
        for band in range(4):
            value = np.zeros(len(h), dtype=np.uint64)
            for k, bit in enumerate(perm[16 * band : 16 * band + 16].tolist()):
                value |= ((h >> np.uint64(bit)) & np.uint64(1)) << np.uint64(k)
            out.append(value)
    return out


def near_pairs(ids: np.ndarray, ph: np.ndarray, dh: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
    """``(id a, id b, distance)`` of the images whose pHash or dHash differ in at most ``threshold``
    bits, among the candidates that agree on a band (:data:`_TABLES`) of either hash. Vectorized:
    after sorting a band, the members of a bucket are neighbours, so the pairs ``d`` apart in the
    order that share a value are the bucket's pairs, for ``d`` up to the largest bucket."""
    n = len(ids)
    keys = []
    for values in [*_bands(ph), *_bands(dh)]:
        order = np.argsort(values, kind="stable")
        v = values[order]
        d = 1
        while d < min(n, 256):  # a bucket larger than 256 (blank images) pairs with its 255 neighbours
            same = v[d:] == v[:-d]
            if not same.any():
                break
            a, b = order[:-d][same], order[d:][same]
            keys.append(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))
            d += 1
    if not keys:
        return []
    unique = np.unique(np.concatenate(keys))
    pairs = np.stack([unique // n, unique % n], axis=1)
    a, b = pairs[:, 0], pairs[:, 1]
    dp = np.bitwise_count(ph[a] ^ ph[b]).astype(np.int64)
    dd = np.bitwise_count(dh[a] ^ dh[b]).astype(np.int64)
    dist = np.minimum(dp, dd)
    keep = dist <= threshold
    return [(int(ids[i]), int(ids[j]), int(d)) for i, j, d in zip(a[keep], b[keep], dist[keep], strict=True)]


#: above this many images the embedding search uses an HNSW graph (approximate) instead of the
#: exact flat index
EXACT_SEARCH_MAX = 20_000


def embedding_pairs(
    store: Any, images: list[dict[str, Any]], run: Path, similarity: float, *, device: str = "auto"
) -> list[tuple[int, int, float]]:
    """``(id a, id b, cosine similarity)`` of the images that are each other's nearest neighbour by
    the embeddings of the classifier of ``run`` and at least ``similarity`` alike.

    The embedding is what the model's last linear layer reads, averaged with the mirror image's
    (a mirrored copy gets the same vector), centred on the selection's mean and L2-normalized;
    neighbours come from a faiss index (exact inner product up to :data:`EXACT_SEARCH_MAX`
    images, HNSW above). Mutual nearest neighbours only: a classifier's features put all images of
    a class close together, and a threshold alone would chain them into one cluster. Identical
    files are embedded once (the hashes pair them already)."""
    import faiss

    from dataforge.training.checkpoint import load_checkpoint
    from dataforge.training.contract import get_trainer
    from dataforge.training.loop import TorchTrainer

    ckpt = load_checkpoint(run)
    if ckpt.get("task") != "classification":
        raise UsageError(
            f"--embeddings {run}: a {ckpt.get('task')} run; embeddings come from a classifier's run "
            "(dataforge train --trainer torchvision-classifier)"
        )
    trainer = get_trainer(ckpt["trainer"])()
    if not isinstance(trainer, TorchTrainer):
        raise UsageError(
            f"--embeddings {run}: trainer {ckpt['trainer']!r} gives no embeddings (not a TorchTrainer)"
        )
    unique: dict[str, dict[str, Any]] = {}
    for img in images:
        unique.setdefault(img.get("sha256") or f"id:{img['id']}", img)
    chosen = list(unique.values())
    if len(chosen) < 3:
        return []
    emb = np.ascontiguousarray(
        trainer.embeddings(ckpt, [store.record(img) for img in chosen], device=device), dtype=np.float32
    )
    emb -= emb.mean(axis=0)  # pooled ReLU features share a large positive part: centred, they spread
    faiss.normalize_L2(emb)
    faiss.omp_set_num_threads(usable_cores())
    index: Any
    if len(chosen) <= EXACT_SEARCH_MAX:
        index = faiss.IndexFlatIP(emb.shape[1])
    else:
        index = faiss.IndexHNSWFlat(emb.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 64
    index.add(emb)
    sims, nbrs = index.search(emb, 2)  # itself, then its nearest
    nearest = np.where(nbrs[:, 0] == np.arange(len(chosen)), nbrs[:, 1], nbrs[:, 0])
    best = np.where(nbrs[:, 0] == np.arange(len(chosen)), sims[:, 1], sims[:, 0])
    ids = [int(img["id"]) for img in chosen]
    out = []
    for i, j in enumerate(nearest.tolist()):
        if i < j and nearest[j] == i and best[i] >= similarity:
            out.append((min(ids[i], ids[j]), max(ids[i], ids[j]), round(float(best[i]), 6)))
    return sorted(out)


def find_duplicates(
    store: Any,
    *,
    where: str | None = None,
    threshold: int = 10,
    near: bool = True,
    workers: int | None = None,
    embeddings: Path | None = None,
    similarity: float = 0.95,
    device: str = "auto",
) -> DedupeResult:
    """Clusters of exact (same SHA-256) and near duplicates among the selected images; with
    ``embeddings`` (a classifier's run), also images its embeddings find ``similarity`` alike."""
    if not 0 <= threshold <= 32:
        raise UsageError(f"--threshold {threshold}: a number of differing bits in 0..32 (default 10)")
    if not 0 < similarity <= 1:
        raise UsageError(f"--similarity {similarity}: a cosine similarity in (0, 1] (default 0.95)")
    images = store.select(where)
    union = _Union()
    by_sha: dict[str, list[int]] = {}
    for img in images:
        by_sha.setdefault(img.get("sha256", ""), []).append(int(img["id"]))
    for group in by_sha.values():
        for other in group[1:]:
            union.join(group[0], other)
    pairs: list[tuple[int, int, int]] = []
    hashed = 0
    if near:
        hs, hashed = hashes(store, images, workers)
        ids = np.array(sorted(hs), dtype=np.int64)
        ph = np.array([hs[i][0] for i in ids.tolist()], dtype=np.uint64)
        dh = np.array([hs[i][1] for i in ids.tolist()], dtype=np.uint64)
        pairs = near_pairs(ids, ph, dh, threshold)
        for a, b, _d in pairs:
            union.join(a, b)
    semantic: list[tuple[int, int, float]] = []
    if embeddings is not None:
        semantic = embedding_pairs(store, images, embeddings, similarity, device=device)
        for a, b, _s in semantic:
            union.join(a, b)
    distance: dict[int, int] = {}
    for a, _b, d in pairs:
        root = union.find(a)
        distance[root] = max(distance.get(root, 0), d)
    sha_of = {int(img["id"]): img.get("sha256") for img in images}
    groups: dict[int, list[int]] = {}
    for iid in sha_of:
        groups.setdefault(union.find(iid), []).append(iid)
    hashed_pairs = {(min(a, b), max(a, b)) for a, b, _d in pairs}
    least: dict[int, float] = {}  # per cluster, the least similar embedding pair the hashes did not join
    for a, b, sim in semantic:
        if (a, b) not in hashed_pairs and sha_of[a] != sha_of[b]:
            root = union.find(a)
            least[root] = min(least.get(root, 1.0), sim)
    clusters = []
    for root, members in groups.items():
        if len(members) > 1:
            if len({sha_of[m] for m in members}) == 1:
                clusters.append(Cluster(sorted(members), "exact"))
            elif root in least:
                clusters.append(Cluster(sorted(members), "semantic", distance.get(root, 0), least[root]))
            else:
                clusters.append(Cluster(sorted(members), "near", distance.get(root, 0)))
    clusters.sort(key=lambda c: (-len(c.image_ids), c.image_ids[0]))
    return DedupeResult(len(images), clusters, hashed, threshold)


def tag_duplicates(store_path: Path, result: DedupeResult, tag: str, keep: str = "first") -> int:
    """Tag every image of each cluster but the one kept (``first``: the lowest id; ``last``)."""
    from dataforge.store import Store
    from dataforge.store.store import check_tag

    check_tag(tag)
    if keep not in ("first", "last"):
        raise UsageError(f"--keep {keep!r}: choose first or last")
    doomed = [i for c in result.clusters for i in (c.image_ids[1:] if keep == "first" else c.image_ids[:-1])]
    with Store.edit(store_path, "dedupe-tag", details={"tag": tag, "images": len(doomed)}) as s:
        return s.add_tags(doomed, [tag])


@dataclass
class Leak:
    image_ids: list[int]
    splits: dict[str, list[int]]  # split -> the cluster's images there
    #: the move that removes the leak: every image of the cluster to ``to`` (the split most of it is in)
    move: dict[str, Any]


def leakage(store: Any, result: DedupeResult) -> tuple[list[Leak], dict[str, int]]:
    """The clusters whose images sit in more than one split, each with the move that removes the
    leak, and the number of leaking clusters per split pair (``"train/test"``)."""
    split_of = {int(img["id"]): img.get("split") or "(none)" for img in store.images}
    order = {"train": 0, "val": 1, "test": 2}
    leaks: list[Leak] = []
    pairs: dict[str, int] = {}
    for c in result.clusters:
        by: dict[str, list[int]] = {}
        for i in c.image_ids:
            by.setdefault(split_of[i], []).append(i)
        if len(by) < 2:
            continue
        to = max(by, key=lambda sp: (len(by[sp]), -order.get(sp, 9)))  # the most, train first on ties
        moving = sorted(i for sp, ids in by.items() if sp != to for i in ids)
        leaks.append(Leak(c.image_ids, by, {"to": to, "image_ids": moving}))
        names = sorted(by, key=lambda sp: order.get(sp, 9))
        for x in range(len(names)):
            for y in range(x + 1, len(names)):
                key = f"{names[x]}/{names[y]}"
                pairs[key] = pairs.get(key, 0) + 1
    return leaks, pairs


def apply_moves(store_path: Path, leaks: list[Leak]) -> int:
    """Move each leak's images to its cluster's split; returns how many moved."""
    from dataforge.store import Store

    moved = 0
    with Store.edit(store_path, "leakage-fix", details={"clusters": len(leaks)}) as s:
        target = {i: leak.move["to"] for leak in leaks for i in leak.move["image_ids"]}
        for img in s.images:
            to = target.get(int(img["id"]))
            if to is not None:
                img["split"] = None if to == "(none)" else to
                moved += 1
        s.invalidate()
    return moved
