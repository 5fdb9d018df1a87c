"""A small Label Studio REST client: the handful of calls dataforge needs, counted, secrets redacted.

Plain ``requests`` rather than the SDK: the SDK loads pandas at import (1.5 s) and pages tasks
one request at a time per default; here every request is counted so benchmarks can report them,
and ``tasks()`` pages through a project with large pages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from dataforge.errors import ComponentError, DataError, UsageError

PAGE_SIZE = 500


class LabelStudio:
    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0) -> None:
        import requests

        self.url = (url or os.environ.get("LABEL_STUDIO_URL") or "").rstrip("/")
        self._key = api_key or os.environ.get("LABEL_STUDIO_API_KEY") or ""
        if not self.url:
            raise UsageError("no Label Studio URL: set LABEL_STUDIO_URL or pass --url")
        if not self._key:
            raise UsageError("no Label Studio API key: set LABEL_STUDIO_API_KEY or pass --api-key")
        self.session = requests.Session()
        scheme = "Bearer" if self._key.count(".") == 2 else "Token"
        self.session.headers["Authorization"] = f"{scheme} {self._key}"
        self.timeout = timeout
        self.requests = 0

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def call(self, method: str, path: str, **kw: Any) -> Any:
        import requests

        self.requests += 1
        try:
            r = self.session.request(method, self.url + path, timeout=self.timeout, **kw)
        except requests.ConnectionError:
            raise ComponentError(
                f"cannot reach Label Studio at {self.url}",
                hint="is the server running? (`dataforge labelstudio serve` starts one)",
            ) from None
        if r.status_code in (401, 403):
            raise UsageError(
                f"Label Studio at {self.url} refused the API key ({r.status_code})",
                hint="check LABEL_STUDIO_API_KEY (legacy tokens need LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN)",
            )
        if r.status_code >= 400:
            raise DataError(self._redact(f"Label Studio {method} {path}: {r.status_code} {r.text[:300]}"))
        return r.json() if r.content else None

    # -- projects ----------------------------------------------------------------------------
    def find_project(self, title_or_id: str) -> dict[str, Any] | None:
        if title_or_id.isdigit():
            return self.call("GET", f"/api/projects/{title_or_id}")
        page = 1
        while True:
            resp = self.call("GET", "/api/projects", params={"page": page, "page_size": 100})
            items = resp["results"] if isinstance(resp, dict) else resp
            for p in items:
                if p.get("title") == title_or_id:
                    return p
            if not isinstance(resp, dict) or not resp.get("next"):
                return None
            page += 1

    def create_project(self, title: str, label_config: str) -> dict[str, Any]:
        return self.call("POST", "/api/projects", json={"title": title, "label_config": label_config})

    def add_local_storage(self, project: int, path: str) -> None:
        """Lets the server serve files under ``path`` for this project (not synced: no duplicate tasks)."""
        self.call(
            "POST",
            "/api/storages/localfiles",
            json={"project": project, "path": path, "use_blob_urls": True, "title": "dataforge store"},
        )

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> list[int]:
        resp = self.call(
            "POST", f"/api/projects/{project}/import", params={"return_task_ids": "true"}, json=tasks
        )
        return list(resp.get("task_ids") or [])

    # -- tasks ---------------------------------------------------------------------------------
    def tasks(self, project: int) -> Iterator[dict[str, Any]]:
        """Every task with its annotations, PAGE_SIZE tasks per request."""
        page = 1
        while True:
            resp = self.call(
                "GET",
                "/api/tasks",
                params={"project": project, "page": page, "page_size": PAGE_SIZE, "fields": "all"},
            )
            items = resp.get("tasks", []) if isinstance(resp, dict) else resp
            yield from items
            total = resp.get("total") if isinstance(resp, dict) else None
            if not items or len(items) < PAGE_SIZE or (total is not None and page * PAGE_SIZE >= total):
                return
            page += 1
