"""Push to and pull from a real Label Studio server (.venv-labelstudio), started once for the module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from dataforge.api import import_dataset
from dataforge.errors import DataError, UsageError
from dataforge.labelstudio.client import LabelStudio
from dataforge.labelstudio.server import LabelStudioServer
from dataforge.labelstudio.sync import pull, push
from dataforge.store import Store
from tests.conftest import REPO, file_bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("ls")
    with LabelStudioServer(root / "server", files_root=root / "files") as srv:
        yield srv


@pytest.fixture
def store(server: LabelStudioServer) -> Path:
    path = server.files_root / f"pets-{len(list(server.files_root.glob('pets-*')))}"
    ex = REPO / "examples" / "pets-mini"
    import_dataset(ex / "instances.json", store=path, images=ex / "images")
    return path


def annotate(client: LabelStudio, task_id: int, result: list[dict], cancelled: bool = False) -> None:
    client.call(
        "POST",
        f"/api/tasks/{task_id}/annotations",
        json={"result": result, "was_cancelled": cancelled, "lead_time": 1.5},
    )


def rect(rid: str, label: str, xywh: list[float], w: int, h: int) -> dict:
    x, y, bw, bh = xywh
    return {
        "id": rid,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {
            "x": x / w * 100,
            "y": y / h * 100,
            "width": bw / w * 100,
            "height": bh / h * 100,
            "rotation": 0,
            "rectanglelabels": [label],
        },
    }


def test_push_annotate_pull_round_trip(server: LabelStudioServer, store: Path) -> None:
    client = LabelStudio(server.url, server.token)
    preds = json.loads((REPO / "examples" / "pets-mini" / "predictions.json").read_text())
    res = push(store, "pets round 2", client, document_root=server.files_root, predictions=preds)
    assert res["created"] and res["pushed"] == 48
    again = push(store, "pets round 2", client, document_root=server.files_root)
    assert again["pushed"] == 0 and again["already_there"] == 48  # no duplicates
    tasks = {t["data"]["dataforge_id"]: t for t in client.tasks(res["project"])}
    assert len(tasks) == 48
    # the image is viewable through the server
    s = Store.open(store)
    img = s.get(1)
    r = requests.get(
        server.url + tasks[1]["data"]["image"], headers={"Authorization": f"Token {server.token}"}, timeout=30
    )
    assert r.status_code == 200 and r.content == img.path.read_bytes()
    assert tasks[1]["predictions"] and tasks[1]["predictions"][0]["model_version"] == "dataforge"

    # a human: on image 1 moves the first box, deletes the second, adds one, and gives a class
    (a1, *_rest) = img.annotations
    w, h = img.size_wh
    x1, y1, x2, y2 = a1.bbox_xyxy
    annotate(
        client,
        tasks[1]["id"],
        [
            rect("m", a1.category, [x1 + 3, y1 + 2, x2 - x1, y2 - y1], w, h),
            rect("n", "bird", [5, 5, 20, 10], w, h),
            {
                "id": "c",
                "from_name": "class",
                "to_name": "image",
                "type": "choices",
                "value": {"choices": ["cat"]},
            },
        ],
    )
    annotate(client, tasks[2]["id"], [], cancelled=True)  # skipped
    before_3 = [(x.category, x.bbox_xyxy) for x in s.get(3).annotations]

    out = pull(store, "pets round 2", client)
    assert out["updated"] == 1 and out["skipped"] == 1
    s = Store.open(store)
    got = sorted((a.category, a.bbox_xyxy) for a in s.get(1).annotations)
    want = sorted([(a1.category, (x1 + 3, y1 + 2, x2 + 3, y2 + 2)), ("bird", (5, 5, 25, 15))])
    assert [g[0] for g in got] == [w_[0] for w_ in want]
    for g, w_ in zip(got, want, strict=True):
        assert g[1] == pytest.approx(w_[1], abs=0.01)
    names = {c.id: c.name for c in s.categories}
    assert [names[c] for c in s.get(1).labels] == ["cat"]
    assert "labelstudio:annotated" in s.get(1).tags and "labelstudio:skipped" in s.get(2).tags
    assert s.get(1).source["labelstudio"]["task_id"] == tasks[1]["id"]
    assert [(x.category, x.bbox_xyxy) for x in s.get(3).annotations] == before_3  # untouched
    assert (
        server.token not in (store / "annotations.json").read_text() + (store / "history.jsonl").read_text()
    )

    # pulling again changes nothing
    rev = s.revision
    assert pull(store, "pets round 2", client)["updated"] == 0
    assert (
        Store.open(store).revision == rev + 1 and Store.open(store).get(1).annotations == s.get(1).annotations
    )


def test_bad_annotations_are_refused_and_nothing_is_written(server: LabelStudioServer, store: Path) -> None:
    client = LabelStudio(server.url, server.token)
    res = push(store, "bad labels", client, document_root=server.files_root)
    tasks = {t["data"]["dataforge_id"]: t for t in client.tasks(res["project"])}
    w, h = Store.open(store).get(4).size_wh
    annotate(client, tasks[4]["id"], [rect("x", "horse", [1, 1, 5, 5], w, h)])
    before = file_bytes(store)
    with pytest.raises(DataError, match=rf"task {tasks[4]['id']} region x: label 'horse' is not a category"):
        pull(store, "bad labels", client)
    assert file_bytes(store) == before


def test_wrong_token_is_a_clear_error_without_the_token(server: LabelStudioServer) -> None:
    client = LabelStudio(server.url, "not-the-token-1234567890")
    with pytest.raises(UsageError, match=r"refused the API key \(401\)") as info:
        client.find_project("x")
    assert "not-the-token" not in str(info.value)
    unreachable = LabelStudio("http://127.0.0.1:9", "t0k3n-secret")
    from dataforge.errors import ComponentError

    with pytest.raises(ComponentError, match=r"cannot reach Label Studio at http://127\.0\.0\.1:9") as info2:
        unreachable.find_project("x")
    assert "t0k3n-secret" not in str(info2.value)


def test_cli_push_status_pull(server: LabelStudioServer, store: Path) -> None:
    from tests.conftest import run_dataforge

    env = {
        "LABEL_STUDIO_URL": server.url,
        "LABEL_STUDIO_API_KEY": server.token,
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(server.files_root),
    }
    p = run_dataforge(
        "labelstudio", "push", store, "--project", "cli project", "--where", "category == 'dog'", env=env
    )
    assert p.returncode == 0, p.stderr
    n_dogs = sum(1 for r in Store.open(store) if any(a.category == "dog" for a in r.annotations))
    assert f"{n_dogs} tasks pushed, 0 already there" in p.stdout and "HTTP requests" in p.stdout
    p = run_dataforge("labelstudio", "status", store, "--project", "cli project", "--json", env=env)
    st = json.loads(p.stdout)
    assert (st["tasks"], st["annotated"], st["pending"], st["last_pull"]) == (n_dogs, 0, n_dogs, None)
    p = run_dataforge("labelstudio", "pull", store, "--project", "cli project", env=env)
    assert p.returncode == 0 and "0 images updated, 0 skipped" in p.stdout
    assert server.token not in p.stdout + p.stderr
    p = run_dataforge("labelstudio", "pull", store, "--project", "no such project", env=env)
    assert p.returncode == 2 and "no Label Studio project 'no such project'" in p.stderr


@pytest.mark.parametrize(
    "kind, message",
    [
        ("rotated", r"region r: the box is rotated 30 degrees"),
        ("outside", r"region r: box xywh .* is empty or outside the"),
        ("other size", r"region r: annotated on a 999x999 image, but the store's image is"),
        ("foreign image", r"dataforge_id 999999 is not an image of"),
    ],
)
def test_pull_refuses_bad_tasks_and_writes_nothing(
    kind: str, message: str, server: LabelStudioServer, store: Path
) -> None:
    client = LabelStudio(server.url, server.token)
    res = push(store, f"bad {kind}", client, document_root=server.files_root, where="id == 5")
    (task,) = list(client.tasks(res["project"]))
    w, h = Store.open(store).get(5).size_wh
    region = rect("r", "cat", [2, 2, 10, 10], w, h)
    if kind == "rotated":
        region["value"]["rotation"] = 30
    elif kind == "outside":
        region["value"]["x"] = 95.0
    elif kind == "other size":
        region["original_width"] = region["original_height"] = 999
    else:
        client.call(
            "PATCH", f"/api/tasks/{task['id']}", json={"data": {**task["data"], "dataforge_id": 999999}}
        )
    annotate(client, task["id"], [region])
    before = file_bytes(store)
    with pytest.raises(DataError, match=message):
        pull(store, f"bad {kind}", client)
    assert file_bytes(store) == before


def test_push_refuses_a_project_whose_config_does_not_match(server: LabelStudioServer, store: Path) -> None:
    client = LabelStudio(server.url, server.token)
    client.create_project(
        "other labels",
        "<View><Image name='image' value='$image'/><RectangleLabels name='label' "
        "toName='image'><Label value='car'/></RectangleLabels></View>",
    )
    with pytest.raises(
        DataError, match=r"labeling config lacks the store's categories \['bird', 'cat', 'dog'\]"
    ):
        push(store, "other labels", client, document_root=server.files_root)


def test_push_with_ground_truth_annotations(server: LabelStudioServer, store: Path) -> None:
    client = LabelStudio(server.url, server.token)
    res = push(
        store, "with gt", client, document_root=server.files_root, with_annotations=True, where="id <= 3"
    )
    tasks = {t["data"]["dataforge_id"]: t for t in client.tasks(res["project"])}
    rec = Store.open(store).get(1)
    (ann,) = tasks[1]["annotations"]
    assert len([r for r in ann["result"] if r["type"] == "rectanglelabels"]) == len(rec.annotations)
    assert res["requests"] <= 6  # find, create, storage, list tasks, import: no request per task


def test_serve_starts_a_local_server_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from dataforge.labelstudio.server import free_port

    port = free_port()
    exe = str(Path(sys.executable).parent / "dataforge")
    proc = subprocess.Popen(
        [
            exe,
            "labelstudio",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--document-root",
            str(tmp_path),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once the server answers
        assert f"Label Studio at http://127.0.0.1:{port}" in first, first
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "API token (keep it secret):" in err
    with pytest.raises(OSError):  # the server went away with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
