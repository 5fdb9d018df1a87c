"""The torchvision backend: ``transforms.v2.functional`` on (CUDA) tensors with ``tv_tensors.BoundingBoxes``.

Meant for CUDA: a chunk's JPEGs are decoded in one batched ``decode_jpeg(device="cuda")`` call
(nvJPEG), transformed on the GPU and encoded in one batched ``encode_jpeg`` call, so the host only
reads and writes files. On CPU tensors the same code runs (that is how CI tests it), but slowly:
there the OpenCV backend is the engine.

Labels go through the ops' own maps (:data:`dataforge.augment.ops.OPS`), the same for both
backends; a test checks those maps against torchvision's box kernels. Colour
jitter is the CPU backend's colour matrix as one tensor contraction (torchvision's own
``adjust_hue`` goes through HSV), so both backends make the same colours.
"""

from __future__ import annotations

from typing import Any

from dataforge import runtime
from dataforge.augment.ops import GRAY_RGB, Kernels, Op, color_matrix
from dataforge.errors import ImageError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when this worker sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    return runtime.resolve_device(
        device, option="--device", hint="use --device auto (CUDA where a worker has it) or --device cpu"
    )


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


#: op name -> the torchvision kernel: ``(3, H, W)`` uint8 RGB tensor and the op -> the new image
KERNELS = Kernels("torchvision")
kernel = KERNELS.register


def _F() -> Any:
    import torchvision.transforms.v2.functional as F

    return F


@kernel("hflip")
def _hflip(img: Any, op: Op) -> Any:
    return _F().horizontal_flip(img)


@kernel("vflip")
def _vflip(img: Any, op: Op) -> Any:
    return _F().vertical_flip(img)


@kernel("crop")
def _crop(img: Any, op: Op) -> Any:
    x0, y0, x1, y1 = op["xyxy"]
    return _F().crop(img, y0, x0, y1 - y0, x1 - x0)


@kernel("resize")
def _resize(img: Any, op: Op) -> Any:
    from torchvision.transforms import InterpolationMode

    nw, nh = op["size"]
    if (nw, nh) == (int(img.shape[-1]), int(img.shape[-2])):
        return img
    return _F().resize(img, [nh, nw], interpolation=InterpolationMode.BILINEAR, antialias=True)


@kernel("rotate")
def _rotate(img: Any, op: Op) -> Any:
    from torchvision.transforms import InterpolationMode

    fill = [float(op.get("fill", 0))] * 3
    return _F().rotate(img, op["angle"], interpolation=InterpolationMode.BILINEAR, fill=fill)


@kernel("color")
def _color(img: Any, op: Op) -> Any:
    return color(img, op["brightness"], op["contrast"], op["saturation"], op["hue"])


@kernel("blur")
def _blur(img: Any, op: Op) -> Any:
    k = int(op["ksize"])
    return _F().gaussian_blur(img, [k, k], [op["sigma"], op["sigma"]])


@kernel("normalize")
def _normalize(img: Any, op: Op) -> Any:
    return _F().normalize(img.float() / 255.0, list(op["mean"]), list(op["std"]))


def apply_ops(img: Any, ops: list[Op]) -> Any:
    """Run ops on one ``(3, H, W)`` uint8 tensor; the labels go through the ops' own maps
    (:data:`dataforge.augment.ops.OPS`), as for the CPU backend."""
    return KERNELS.run(img, ops)
