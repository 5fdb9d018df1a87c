"""``dataforge labelstudio push|pull|status|serve``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from dataforge.cli.args import WHERE_HELP, Commands, Handler
from dataforge.cli.render import err, out, print_json
from dataforge.errors import UsageError


def _ls_client(a: argparse.Namespace) -> Any:
    from dataforge.labelstudio.client import LabelStudio

    return LabelStudio(a.url, a.api_key)


def cmd_ls_push(a: argparse.Namespace) -> int:
    from pathlib import Path

    from dataforge.evaluation.predictions import load_predictions
    from dataforge.labelstudio.sync import push

    root = a.document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    if not root:
        raise UsageError(
            "no document root: pass --document-root or set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
            "(the folder the Label Studio server serves local files from)"
        )
    preds = load_predictions(Path(a.predictions)) if a.predictions else None
    r = push(
        Path(a.store),
        a.project,
        _ls_client(a),
        document_root=Path(root),
        where=a.where,
        predictions=preds,
        with_annotations=a.with_annotations,
    )
    out(
        f"project {r['project']} ({'created' if r['created'] else 'existing'}): {r['pushed']} tasks pushed, "
        f"{r['already_there']} already there; {r['requests']} HTTP requests"
    )
    return 0


def cmd_ls_pull(a: argparse.Namespace) -> int:
    from pathlib import Path

    from dataforge.labelstudio.sync import pull

    r = pull(Path(a.store), a.project, _ls_client(a))
    out(
        f"project {r['project']}: {r['updated']} images updated, {r['skipped']} skipped; "
        f"{r['requests']} HTTP requests"
    )
    return 0


def cmd_ls_status(a: argparse.Namespace) -> int:
    from pathlib import Path

    from dataforge.labelstudio.sync import status

    r = status(Path(a.store), a.project, _ls_client(a))
    if a.json:
        print_json(r)
    else:
        out(
            f"project {r['project']} {r['title']!r}: {r['tasks']} tasks, {r['annotated']} annotated, "
            f"{r['skipped']} skipped, {r['pending']} pending; last pull: {r['last_pull'] or 'never'}"
        )
    return 0


def cmd_ls_serve(a: argparse.Namespace) -> int:
    import signal
    import time
    from pathlib import Path

    from dataforge.labelstudio.server import LabelStudioServer

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM stop the server even when this process was started with SIGINT ignored
    # (what a shell does to background jobs, and Python then installs no KeyboardInterrupt handler)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)

    srv = LabelStudioServer(Path(a.data_dir), files_root=Path(a.document_root), port=a.port)
    with srv:
        out(
            f"Label Studio at {srv.url} (user {srv.username}, password {srv.password}); Ctrl-C to stop\n"
            f"export LABEL_STUDIO_URL={srv.url} LABEL_STUDIO_API_KEY=<the token printed below> "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={srv.files_root}"
        )
        err(f"API token (keep it secret): {srv.token}")
        try:
            while srv.proc is not None and srv.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


def add_labelstudio(add: Commands) -> None:
    ls = add.sub.add_parser(
        "labelstudio",
        help="push images to and pull annotations from a Label Studio server",
        description="Label Studio round trip. The server URL and API key come from "
        "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (or --url / --api-key).",
    )
    ls_sub = ls.add_subparsers(dest="ls_command", metavar="COMMAND")

    def ls_add(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p2 = ls_sub.add_parser(name, help=help, description=help)
        p2.set_defaults(handler=handler)
        if name != "serve":
            p2.add_argument("store")
            p2.add_argument("--project", required=True, help="project title or id")
            p2.add_argument("--url", help="server URL (default: $LABEL_STUDIO_URL)")
            p2.add_argument(
                "--api-key", help="API key (default: $LABEL_STUDIO_API_KEY; never stored or logged)"
            )
        return p2

    p2 = ls_add(
        "push", cmd_ls_push, "create or reuse a project and push the store's images (and predictions)"
    )
    p2.add_argument("--where", help=WHERE_HELP)
    p2.add_argument("--predictions", help="COCO results JSON to attach as pre-annotations")
    p2.add_argument(
        "--with-annotations",
        action="store_true",
        help="also push the store's boxes and labels as (ground-truth) annotations",
    )
    p2.add_argument(
        "--document-root",
        help="the server's local-files document root "
        "(default: $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); must contain the store",
    )
    ls_add("pull", cmd_ls_pull, "bring finished annotations back into the store (atomic, incremental)")
    p2 = ls_add("status", cmd_ls_status, "tasks, annotated, skipped and pending, and the last pull")
    p2.add_argument("--json", action="store_true", help="print JSON")
    p2 = ls_add("serve", cmd_ls_serve, "start a local Label Studio for this user (until Ctrl-C)")
    p2.add_argument("--data-dir", default="labelstudio-data", help="where the server keeps its database")
    p2.add_argument(
        "--document-root", default=".", help="folder served as local files; must contain your stores"
    )
    p2.add_argument("--port", type=int, default=8080)
