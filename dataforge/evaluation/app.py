"""``dataforge app NAME``: serve the FiftyOne App on a FiftyOne dataset until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import signal
import sys
from typing import Any

from dataforge.errors import DataError
from dataforge.evaluation.fiftyone_export import _fo


def serve(name: str, *, address: str = "127.0.0.1", port: int = 5151, wait: bool = True) -> Any:
    fo = _fo()
    if not fo.dataset_exists(name):
        known = ", ".join(fo.list_datasets()) or "none"
        raise DataError(
            f"no FiftyOne dataset named {name!r} (datasets: {known})",
            hint="create one with `dataforge evaluate STORE --predictions P --fiftyone NAME`",
        )
    dataset = fo.load_dataset(name)
    session = fo.launch_app(dataset, remote=True, address=address, port=port, auto=False)
    url = f"http://{address}:{port}/datasets/{name}"
    print(f"FiftyOne App: {url}  ({len(dataset)} samples; Ctrl-C to stop)", flush=True)
    if not wait:
        return session

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started in the background, where SIGINT begins ignored
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
        print("FiftyOne App stopped", file=sys.stderr, flush=True)
    return None
