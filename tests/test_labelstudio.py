"""Push to and pull from a real Label Studio server (.venv-labelstudio), started once for the module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    creds = json.loads((tmp_path / "data" / "credentials.json").read_text())
    assert (tmp_path / "data" / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert "credentials.json" in first and creds["password"] not in first + _out + err
    assert creds["token"] not in first + _out + err and creds["password"] != "dataforge-pass"
    with pytest.raises(OSError):  # the server went away with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    env = subprocess.run(
        [exe, "labelstudio", "env", "--data-dir", str(tmp_path / "data")], capture_output=True, text=True
    )
    assert env.returncode == 0 and f"export LABEL_STUDIO_API_KEY={creds['token']}" in env.stdout
    assert f"export LABEL_STUDIO_URL=http://127.0.0.1:{port}" in env.stdout


def test_a_restarted_server_keeps_its_credentials(tmp_path: Path) -> None:
    """Label Studio sets the admin's password and token when it creates the user, so the data
    directory keeps them: a second start on it answers the same token (a new random one would not
    work), and another data directory gets other ones."""
    for _ in range(2):
        with LabelStudioServer(tmp_path / "a", files_root=tmp_path) as srv:
            assert LabelStudio(srv.url, srv.token).find_project("none") is None  # the token works
            token = srv.token
    assert json.loads((tmp_path / "a" / "credentials.json").read_text())["token"] == token
    assert LabelStudioServer(tmp_path / "b", files_root=tmp_path).token != token


def shapes_under(server: LabelStudioServer, name: str, n: int = 4) -> Path:
    """A shapes store (exact RLE masks, the triangles' keypoints; the first object a polygon)
    under the server's document root."""
    from dataforge.synthetic import make_shapes_dataset

    root = server.files_root / name
    make_shapes_dataset(
        root / "src", n_images=n, size_wh=(64, 48), max_objects=3, seed=7, masks=True, keypoints=True
    )
    data = json.loads((root / "src" / "instances.json").read_text())
    x, y, w, h = data["annotations"][0]["bbox"]
    data["annotations"][0]["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    data["annotations"][0]["area"] = w * h
    (root / "src" / "instances.json").write_text(json.dumps(data))
    import_dataset(root / "src" / "instances.json", store=root / "store", images=root / "src" / "images")
    return root / "store"


def test_masks_and_keypoints_round_trip_through_the_server(server: LabelStudioServer) -> None:
    """Push with the store's objects as annotations (polygons, brush masks, keypoints as children
    of their object, in a project made with the controls they need), pull them back: masks equal
    pixel for pixel, points within 1e-3 px, boxes within 1e-4 px, nothing dropped."""
    from dataforge.masks import decode

    store = shapes_under(server, "shapes-rt")
    client = LabelStudio(server.url, server.token)
    res = push(store, "shapes rt", client, document_root=server.files_root, with_annotations=True)
    config = client.find_project("shapes rt")["label_config"]
    for control in ("<PolygonLabels", "<BrushLabels", "<KeyPointLabels", 'value="apex"'):
        assert control in config
    kinds = {r["type"] for t in client.tasks(res["project"]) for a in t["annotations"] for r in a["result"]}
    assert kinds == {"polygonlabels", "brushlabels", "keypointlabels"}
    before = Store.open(store)
    out = pull(store, "shapes rt", client)
    assert out["updated"] == 4 and out["invalid"] == 0
    after = Store.open(store)

    def objects(s: Store, iid: int) -> list[dict]:
        return sorted(s.index.anns_by_image.get(iid, []), key=lambda a: (a["category_id"], a["bbox"]))

    n = 0
    for img in before.images:
        w, h = img["width"], img["height"]
        for a, b in zip(objects(before, img["id"]), objects(after, img["id"]), strict=True):
            assert a["category_id"] == b["category_id"]
            assert np.array_equal(decode(a["segmentation"], h, w), decode(b["segmentation"], h, w))
            assert np.allclose(a["bbox"], b["bbox"], atol=1e-4)
            assert ("keypoints" in a) == ("keypoints" in b)
            if "keypoints" in a:
                assert np.allclose(a["keypoints"], b["keypoints"], atol=1e-3)
            n += 1
    assert n == len(before.annotations) == len(after.annotations)
    first = next(a for a in after.annotations if isinstance(a["segmentation"], list))
    assert len(first["segmentation"]) == 1  # the polygon came back a polygon


def test_predictions_with_masks_and_points_become_scored_pre_annotations(server: LabelStudioServer) -> None:
    store = shapes_under(server, "shapes-pred", n=2)
    s = Store.open(store)
    preds = [
        {k: a[k] for k in ("image_id", "category_id", "bbox", "segmentation", "keypoints") if k in a}
        | {"score": 0.8}
        for a in s.annotations
    ]
    client = LabelStudio(server.url, server.token)
    res = push(store, "shapes pred", client, document_root=server.files_root, predictions=preds)
    regions = [r for t in client.tasks(res["project"]) for p in t["predictions"] for r in p["result"]]
    # predictions are checked as evaluate checks them: masks come out exact RLE, so brush regions
    assert {r["type"] for r in regions} == {"brushlabels", "keypointlabels"}
    assert all(r.get("score") == 0.8 for r in regions if r["type"] != "keypointlabels")
    with pytest.raises(
        DataError, match=r"preds.json: prediction 0: category_id 99 is not in the ground truth"
    ):
        push(
            store,
            "shapes pred 2",
            client,
            document_root=server.files_root,
            predictions=[{**preds[0], "category_id": 99}],
            predictions_source="preds.json",
        )


def test_one_bad_task_does_not_block_the_team_with_on_error_skip(
    server: LabelStudioServer, store: Path
) -> None:
    """An unknown label in one task: the default pull stops and writes nothing; --on-error skip
    pulls the good task, reports the bad one and tags its image, which keeps its boxes."""
    client = LabelStudio(server.url, server.token)
    res = push(store, "one slip", client, document_root=server.files_root, where="id <= 2")
    tasks = {t["data"]["dataforge_id"]: t for t in client.tasks(res["project"])}
    w, h = Store.open(store).get(1).size_wh
    annotate(client, tasks[1]["id"], [rect("ok", "dog", [2, 2, 10, 10], w, h)])
    annotate(client, tasks[2]["id"], [rect("bad", "horse", [2, 2, 10, 10], w, h)])
    before = file_bytes(store)
    with pytest.raises(DataError, match=r"region bad: label 'horse' is not a category of the store"):
        pull(store, "one slip", client)
    assert file_bytes(store) == before
    boxes_2 = Store.open(store).get(2).annotations
    out = pull(store, "one slip", client, on_error="skip")
    assert out["updated"] == 1 and out["invalid"] == 1
    (bad,) = out["invalid_tasks"]
    assert bad["task"] == tasks[2]["id"] and bad["image_id"] == 2 and "'horse'" in bad["problem"]
    s = Store.open(store)
    assert "labelstudio:invalid" in s.get(2).tags and s.get(2).annotations == boxes_2
    assert [a.category for a in s.get(1).annotations] == ["dog"]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            [{"id": "e", "type": "ellipselabels", "from_name": "e", "to_name": "image", "value": {}}],
            r"region e: a 'ellipselabels' region, which dataforge does not store",
        ),
        (
            [
                {
                    "id": "k",
                    "type": "keypointlabels",
                    "from_name": "kp",
                    "to_name": "image",
                    "original_width": 64,
                    "original_height": 48,
                    "value": {"x": 10, "y": 10, "keypointlabels": ["tail"]},
                }
            ],
            r"region k: point 'tail' is not a point of 'bird' \(apex, left_base, right_base\)",
        ),
    ],
)
def test_pull_refuses_regions_it_cannot_store(
    server: LabelStudioServer, result: list[dict], message: str
) -> None:
    store = shapes_under(server, f"shapes-bad-{len(list(server.files_root.glob('shapes-bad-*')))}", n=1)
    client = LabelStudio(server.url, server.token)
    title = f"refuse {message[:20]}"
    res = push(store, title, client, document_root=server.files_root)
    (task,) = list(client.tasks(res["project"]))
    annotate(client, task["id"], result)
    with pytest.raises(DataError, match=message):
        pull(store, title, client)


def test_mislabels_pushes_the_top_candidates_for_review(server: LabelStudioServer) -> None:
    """The candidates' images go to a review project with the store's labels as annotations and
    the model's predictions as scored pre-annotations; classification predictions as choices."""
    from dataforge.api import mislabels

    store = shapes_under(server, "shapes-review", n=6)
    s = Store.open(store)
    names = {c["id"]: c["name"] for c in s.data["categories"]}
    # the model: each object as labelled, but the first object of images 1 and 2 called another class
    preds = []
    for a in s.annotations:
        cat = a["category_id"]
        if a["image_id"] in (1, 2) and a["id"] == min(
            b["id"] for b in s.annotations if b["image_id"] == a["image_id"]
        ):
            cat = next(c for c in names if c != cat)
        preds.append({"image_id": a["image_id"], "category_id": cat, "bbox": a["bbox"], "score": 0.9})
    pred_file = server.files_root / "shapes-review" / "preds.json"
    pred_file.write_text(json.dumps(preds))
    report = mislabels(
        store,
        pred_file,
        top=1,
        labelstudio_project="review",
        url=server.url,
        api_key=server.token,
        document_root=server.files_root,
    )
    assert [c.kind for c in report.candidates] == ["wrong_class"] and report.pushed == 1
    client = LabelStudio(server.url, server.token)
    project = client.find_project("review")
    assert project is not None
    (task,) = client.tasks(int(project["id"]))
    assert task["data"]["dataforge_id"] == report.candidates[0].image_id
    (ann,) = task["annotations"]
    shapes = [r for r in ann["result"] if r["type"] in ("rectanglelabels", "polygonlabels", "brushlabels")]
    assert len(shapes) == len(s.index.anns_by_image[report.candidates[0].image_id])  # the labels as they are
    labels = sorted(r["value"]["rectanglelabels"][0] for p in task["predictions"] for r in p["result"])
    assert report.candidates[0].suggested in labels
    # classification results push as the top class, a scored choice
    top = [{"image_id": 3, "scores": {names[1]: 0.2, names[2]: 0.7, names[3]: 0.1}}]
    res = push(store, "classes", client, document_root=server.files_root, predictions=top, where="id == 3")
    (task,) = client.tasks(res["project"])
    (choice,) = [r for p in task["predictions"] for r in p["result"]]
    assert choice["type"] == "choices" and choice["value"]["choices"] == [names[2]]
    assert task["predictions"][0]["score"] == 0.7
