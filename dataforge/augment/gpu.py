"""The torchvision backend: ``transforms.v2.functional`` on (CUDA) tensors with ``tv_tensors.BoundingBoxes``.

Meant for CUDA: a chunk's JPEGs are decoded in one batched ``decode_jpeg(device="cuda")`` call
(nvJPEG), transformed on the GPU and encoded in one batched ``encode_jpeg`` call, so the host only
reads and writes files. On CPU tensors the same code runs (that is how CI tests it), but slowly:
there the OpenCV backend is the engine.

The kernels live with their steps (``dataforge/augment/steps/``) and register in
:data:`dataforge.augment.registry.GPU_KERNELS`. Labels go through the ops' own maps
(:data:`dataforge.augment.registry.OPS`), the same for both backends; a test checks those maps
against torchvision's box kernels. Colour jitter is the CPU backend's colour matrix as one tensor
contraction, so both backends make the same colours.
"""

from __future__ import annotations

from typing import Any

from dataforge import runtime
from dataforge.augment.registry import GPU_KERNELS, Op
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


#: op name -> the torchvision kernel: ``(3, H, W)`` uint8 RGB tensor and the op -> the new image
KERNELS = GPU_KERNELS


def functional() -> Any:
    """``torchvision.transforms.v2.functional``, imported on first use."""
    import torchvision.transforms.v2.functional as F

    return F


def apply_ops(img: Any, ops: list[Op]) -> Any:
    """Run ops on one ``(3, H, W)`` uint8 tensor; the labels go through the ops' own maps
    (:data:`dataforge.augment.registry.OPS`), as for the CPU backend."""
    return KERNELS.run(img, ops)
