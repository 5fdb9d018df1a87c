"""Checkpoints: plain dicts of tensors and JSON-like values that load with ``weights_only=True``.

Keys: ``format`` ("dataforge-checkpoint"), ``format_version``, ``dataforge_version``, ``trainer``,
``task``, ``config`` (the resolved config), ``categories`` (``[{"id", "name"}]`` in model index
order), ``model`` (the state dict), ``epoch``, ``step``, ``metrics``, ``best`` (the best validation
metric so far), and in ``last.pt`` also ``optimizer`` (its state dict) for ``--resume``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dataforge import __version__
from dataforge.errors import DataError, UsageError

FORMAT = "dataforge-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "dataforge_version": __version__, **payload}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(doc, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True`` (no arbitrary pickle); a run directory means its ``best.pt``."""
    import pickle
    import zipfile

    import torch

    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise UsageError(
                f"{path}: no best.pt or last.pt in this run directory",
                hint="train first with `dataforge train`",
            )
    if not p.is_file():
        raise UsageError(f"{p}: no such checkpoint")
    try:
        doc = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{p}: not a readable checkpoint (corrupt, truncated or not made by dataforge): {first}",
            source=str(p),
            reason="corrupt-checkpoint",
            hint="use the run's other checkpoint (best.pt / last.pt) or train again",
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{p}: not a dataforge checkpoint (no 'format: {FORMAT}' inside)", source=str(p))
    if int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(
            f"{p}: checkpoint format {doc['format_version']} is newer than this dataforge reads ({FORMAT_VERSION})",
            hint="upgrade dataforge",
        )
    return doc
