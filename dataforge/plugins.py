"""Entry-point plugins: the one discovery path for formats, trainers and other extensions.

Listing reads entry-point metadata only; a plugin's module is imported when it is used.
Built-in plugins register through the same entry points as third-party ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from dataforge.errors import PluginError

FORMATS = "dataforge.formats"
TRAINERS = "dataforge.trainers"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    value: str  # "module:attr"
    distribution: str
    entry: EntryPoint | None = field(default=None, compare=False, repr=False)


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.metadata["Name"]) if dist is not None else "?"


@lru_cache(maxsize=8)
def available(group: str) -> dict[str, PluginInfo]:
    """Plugins of ``group`` by name, without importing them. Duplicate names are an error."""
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=group):
        info = PluginInfo(ep.name, ep.value, _dist_name(ep), ep)
        prev = found.get(ep.name)
        if prev is not None and prev.value != info.value:
            raise PluginError(
                f"plugin name {ep.name!r} in {group} is registered twice: by {prev.distribution} "
                f"({prev.value}) and by {info.distribution} ({info.value})",
                hint=f"uninstall one of the two distributions (pip uninstall {info.distribution})",
            )
        found[ep.name] = info
    return dict(sorted(found.items()))


def load(group: str, name: str) -> Any:
    """Import and return the object registered as ``name`` in ``group``."""
    plugins = available(group)
    if name not in plugins:
        names = ", ".join(plugins) or "none installed"
        raise PluginError(f"unknown {group.rsplit('.', 1)[-1][:-1]} {name!r} (available: {names})")
    info = plugins[name]
    assert info.entry is not None
    try:
        return info.entry.load()
    except Exception as exc:
        raise PluginError(
            f"plugin {name!r} from {info.distribution} ({info.value}) failed to load: {type(exc).__name__}: {exc}",
            hint=f"reinstall or fix {info.distribution}",
        ) from exc
