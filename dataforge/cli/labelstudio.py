"""``dataforge labelstudio push|pull|status|serve``."""

from __future__ import annotations

import argparse
from typing import Any

from dataforge.cli.args import WHERE_HELP, Commands, Handler
from dataforge.cli.render import err, out, print_json


def cmd_ls_push(a: argparse.Namespace) -> int:
    from dataforge.api import labelstudio_push

    r = labelstudio_push(
        a.store,
        a.project,
        url=a.url,
        api_key=a.api_key,
        document_root=a.document_root,
        where=a.where,
        predictions=a.predictions,
        with_annotations=a.with_annotations,
    )
    out(
        f"project {r.project} ({'created' if r.created else 'existing'}): {r.pushed} tasks pushed, "
        f"{r.already_there} already there; {r.requests} HTTP requests"
    )
    return 0


def cmd_ls_pull(a: argparse.Namespace) -> int:
    from dataforge.api import labelstudio_pull

    r = labelstudio_pull(a.store, a.project, url=a.url, api_key=a.api_key, on_error=a.on_error)
    bad = f", {len(r.invalid)} tasks left out (tagged labelstudio:invalid)" if r.invalid else ""
    out(
        f"project {r.project}: {r.updated} images updated, {r.skipped} skipped{bad}; {r.requests} HTTP requests"
    )
    for b in r.invalid[:10]:
        err(f"  left out: {b['problem']}")
    if len(r.invalid) > 10:
        err(f"  ... and {len(r.invalid) - 10} more (see the store's history: dataforge history)")
    return 0


def cmd_ls_status(a: argparse.Namespace) -> int:
    from dataforge.api import labelstudio_status

    r = labelstudio_status(a.store, a.project, url=a.url, api_key=a.api_key)
    if a.json:
        print_json(r.__dict__)
    else:
        out(
            f"project {r.project} {r.title!r}: {r.tasks} tasks, {r.annotated} annotated, "
            f"{r.skipped} skipped, {r.pending} pending; last pull: {r.last_pull or 'never'}"
        )
    return 0


def cmd_ls_serve(a: argparse.Namespace) -> int:
    from dataforge.api import serve_labelstudio

    def ready(srv: Any) -> None:
        from dataforge.labelstudio.server import CREDENTIALS, remember

        remember(srv.workdir, url=srv.url, document_root=str(srv.files_root))
        out(
            f"Label Studio at {srv.url} (user {srv.username}; the password and API token are in "
            f"{srv.workdir / CREDENTIALS}, readable by you alone); Ctrl-C to stop\n"
            f'in another shell: eval "$(dataforge labelstudio env --data-dir {srv.workdir})"   '
            "(sets LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)"
        )

    serve_labelstudio(a.data_dir, document_root=a.document_root, port=a.port, on_ready=ready)
    return 0


def cmd_ls_env(a: argparse.Namespace) -> int:
    """Print the shell exports for the server ``serve`` runs on DATA_DIR (its kept credentials)."""
    import json
    import shlex
    from pathlib import Path

    from dataforge.errors import UsageError
    from dataforge.labelstudio.server import CREDENTIALS

    path = Path(a.data_dir) / CREDENTIALS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(
            f"{path}: no credentials there", hint="start the server first: dataforge labelstudio serve"
        ) from None
    if "url" not in data:
        raise UsageError(f"{path}: the server has not been started yet", hint="dataforge labelstudio serve")
    for name, key in (
        ("LABEL_STUDIO_URL", "url"),
        ("LABEL_STUDIO_API_KEY", "token"),
        ("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", "document_root"),
    ):
        out(f"export {name}={shlex.quote(str(data[key]))}")
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
        if name not in ("serve", "env"):
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
    p2.add_argument(
        "--predictions",
        help="predictions to attach as pre-annotations with their scores: COCO results (boxes, masks as "
        "polygons or brush, keypoints) or semantic results",
    )
    p2.add_argument(
        "--with-annotations",
        action="store_true",
        help="also push the store's objects (boxes, masks, keypoints) and labels as (ground-truth) annotations",
    )
    p2.add_argument(
        "--document-root",
        help="the server's local-files document root "
        "(default: $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); must contain the store",
    )
    p2 = ls_add(
        "pull",
        cmd_ls_pull,
        "bring finished annotations (boxes, polygons, brush masks, keypoints, classes) back into the "
        "store (atomic, incremental)",
    )
    p2.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="fail: the first bad task stops the pull, nothing is written (default); skip: leave bad "
        "tasks out, report them, tag their images labelstudio:invalid, pull the rest",
    )
    p2 = ls_add("status", cmd_ls_status, "tasks, annotated, skipped and pending, and the last pull")
    p2.add_argument("--json", action="store_true", help="print JSON")
    p2 = ls_add("serve", cmd_ls_serve, "start a local Label Studio for this user (until Ctrl-C)")
    p2.add_argument("--data-dir", default="labelstudio-data", help="where the server keeps its database")
    p2.add_argument(
        "--document-root", default=".", help="folder served as local files; must contain your stores"
    )
    p2.add_argument("--port", type=int, default=8080)
    p2 = ls_add(
        "env",
        cmd_ls_env,
        "print the exports (URL, API key, document root) for the server `serve` runs on --data-dir",
    )
    p2.add_argument("--data-dir", default="labelstudio-data", help="the server's data directory")
