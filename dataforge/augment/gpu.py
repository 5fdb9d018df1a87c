"""The torchvision backend: ``transforms.v2.functional`` on (CUDA) tensors with ``tv_tensors.BoundingBoxes``.

Meant for CUDA: a chunk's JPEGs are decoded in one batched ``decode_jpeg(device="cuda")`` call
(nvJPEG), transformed on the GPU and encoded in one batched ``encode_jpeg`` call, so the host only
reads and writes files. On CPU tensors the same code runs (that is how CI tests it), but slowly:
there the OpenCV backend is the engine.

Boxes go through torchvision's own box kernels (unclamped), then the CPU backend's clipping and
visibility rule (:func:`dataforge.augment.ops.clip_boxes`), so tests can compare the two
backends' geometry. Colour
jitter is the CPU backend's colour matrix as one tensor contraction (torchvision's own
``adjust_hue`` goes through HSV), so both backends make the same colours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataforge.augment.ops import GRAY_RGB, Op, clip_boxes, color_matrix
from dataforge.boxes import FloatArray
from dataforge.errors import ComponentError, ImageError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when this process sees a GPU, else ``cpu``. ``cuda`` without one is an error."""
    if device == "cpu":
        return "cpu"
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise ComponentError(
            "--device cuda was requested but this worker has no usable CUDA GPU "
            f"(torch {torch.__version__}, cuda build {torch.version.cuda or 'none'})",
            hint="use --device auto (CUDA where a worker has it) or --device cpu",
        )
    return device


def _io(*names: str) -> Any:
    """torchvision.io's codecs, wrapped so they do not warn on every call: torchvision 0.29
    deprecates them in favour of TorchCodec, which has no batched nvJPEG still-image API yet."""
    import functools
    import warnings

    import torchvision.io as tvio

    def quiet(fn: Any) -> Any:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="The image decoding and encoding", category=DeprecationWarning
                )
                return fn(*args, **kwargs)

        return call

    return tuple(getattr(tvio, n) if n[0].isupper() else quiet(getattr(tvio, n)) for n in names)


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def decode_batch(datas: list[bytes], device: str, *, names: list[str]) -> list[Any]:
    """Decode to RGB ``(3, H, W)`` uint8 tensors on ``device``; JPEGs in one batched call."""
    import torch

    ImageReadMode, decode_image, decode_jpeg = _io("ImageReadMode", "decode_image", "decode_jpeg")

    out: list[Any] = [None] * len(datas)
    jpeg_idx = [i for i, d in enumerate(datas) if _is_jpeg(d)]
    tensors = {i: torch.frombuffer(bytearray(d), dtype=torch.uint8) for i, d in enumerate(datas)}
    if jpeg_idx:
        try:
            decoded = decode_jpeg([tensors[i] for i in jpeg_idx], mode=ImageReadMode.RGB, device=device)
            for i, img in zip(jpeg_idx, decoded, strict=True):
                out[i] = img
        except RuntimeError:
            jpeg_idx = []  # one bad file fails the batch: decode one by one to name it
    for i in range(len(datas)):
        if out[i] is None:
            try:
                out[i] = decode_image(tensors[i], mode=ImageReadMode.RGB).to(device)
            except RuntimeError as exc:
                raise ImageError(
                    f"{names[i]}: cannot decode the image (corrupt or not an image): {str(exc).splitlines()[0]}",
                    source=names[i],
                    reason="corrupt-image",
                ) from None
    return out


def encode_batch(images: list[Any], fmt: str, *, quality: int, png_compression: int) -> list[bytes]:
    encode_jpeg, encode_png = _io("encode_jpeg", "encode_png")

    if not images:
        return []
    if fmt == "jpeg":
        encoded = encode_jpeg([img.contiguous() for img in images], quality=quality)
        return [bytes(e.cpu().numpy().tobytes()) for e in encoded]
    return [
        bytes(encode_png(img.cpu(), compression_level=png_compression).numpy().tobytes()) for img in images
    ]


def color(img: Any, brightness: float, contrast: float, saturation: float, hue: float) -> Any:
    """The CPU backend's colour matrix (:func:`dataforge.augment.ops.color_matrix`) on a
    ``(3, H, W)`` uint8 RGB tensor, so both backends jitter colours the same way."""
    import torch

    m = torch.as_tensor(
        color_matrix(brightness, contrast, saturation, hue), dtype=torch.float32, device=img.device
    )
    x = img.to(torch.float32)
    bias = 0.0
    if contrast != 1.0:
        grey = (torch.as_tensor(GRAY_RGB, dtype=torch.float32, device=img.device) @ x.mean(dim=(1, 2))).item()
        bias = (1 - contrast) * min(255.0, brightness * grey)
    out = torch.einsum("ij,jhw->ihw", m, x) + bias
    return out.round_().clamp_(0, 255).to(torch.uint8)


def apply_ops(img: Any, boxes_xyxy: FloatArray, ops: list[Op]) -> tuple[Any, FloatArray, FloatArray]:
    """Run ops on one ``(3, H, W)`` tensor and its boxes. Returns ``(image, boxes, visibility)``."""
    import torch
    import torchvision.transforms.v2.functional as F
    from torchvision import tv_tensors
    from torchvision.transforms import InterpolationMode

    h, w = int(img.shape[-2]), int(img.shape[-1])
    b = tv_tensors.BoundingBoxes(
        torch.as_tensor(np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)),
        format="XYXY",
        canvas_size=(h, w),
        clamping_mode=None,
    )
    vis: FloatArray = np.ones(len(b), dtype=np.float64)

    def clip(boxes: Any, w: int, h: int) -> Any:  # the CPU backend's rule, on the (CPU) box tensor
        nonlocal vis
        clipped, vis = clip_boxes(boxes.as_subclass(torch.Tensor).numpy(), vis, w, h)
        return tv_tensors.wrap(torch.as_tensor(clipped), like=boxes)

    for op in ops:
        kind = op["op"]
        if kind == "hflip":
            img, b = F.horizontal_flip(img), F.horizontal_flip(b)
        elif kind == "vflip":
            img, b = F.vertical_flip(img), F.vertical_flip(b)
        elif kind == "crop":
            x0, y0, x1, y1 = op["xyxy"]
            img, b = F.crop(img, y0, x0, y1 - y0, x1 - x0), F.crop(b, y0, x0, y1 - y0, x1 - x0)
            h, w = y1 - y0, x1 - x0
            b = clip(b, w, h)
        elif kind == "resize":
            nw, nh = op["size"]
            if (nw, nh) != (w, h):
                img = F.resize(img, [nh, nw], interpolation=InterpolationMode.BILINEAR, antialias=True)
                b = F.resize(b, [nh, nw])
            w, h = nw, nh
        elif kind == "rotate":
            fill = [float(op.get("fill", 0))] * 3
            img = F.rotate(img, op["angle"], interpolation=InterpolationMode.BILINEAR, fill=fill)
            b = F.rotate(b, op["angle"])
            b = clip(b, w, h)
        elif kind == "color":
            img = color(img, op["brightness"], op["contrast"], op["saturation"], op["hue"])
        elif kind == "blur":
            k = int(op["ksize"])
            img = F.gaussian_blur(img, [k, k], [op["sigma"], op["sigma"]])
        elif kind == "normalize":
            img = F.normalize(img.float() / 255.0, list(op["mean"]), list(op["std"]))
        else:
            raise ValueError(f"unknown op {kind!r}")
    return img, b.as_subclass(torch.Tensor).numpy(), vis
