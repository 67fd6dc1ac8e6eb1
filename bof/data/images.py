"""Reading images with errors that name the file: a missing, unreadable or truncated image."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from bof.errors import DatasetError

if TYPE_CHECKING:
    from torchvision import tv_tensors

_JPEG_END = b"\xff\xd9"


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, plus a cheap truncation check for JPEGs.

    Only the header and the last kilobyte are read, so a whole dataset is checked in
    seconds; a JPEG cut short loses its end-of-image marker.
    """
    try:
        with Image.open(path) as image:
            size, image_format = image.size, image.format
    except FileNotFoundError:
        raise DatasetError(path, "image file is missing") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(path, f"not a readable image ({error})") from None
    if image_format == "JPEG":
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 1024))
            if _JPEG_END not in handle.read():
                raise DatasetError(path, "JPEG is truncated (no end-of-image marker)")
    return size


def load_image(path: Path) -> tv_tensors.Image:
    """Decode to uint8 RGB [3, H, W]; grey, CMYK and palette images are converted.

    The tensor is a channels-last view (strides ``(1, 3 W, 3)``): the layout both decoders
    produce, and the one torch's uint8 resize kernels and OpenCV's colour transform are fastest
    on, so no copy is made here. JPEGs are decoded by torchvision (libjpeg-turbo: the same
    pixels as PIL, ~30 % faster); anything it refuses goes through PIL, whose error names the file.
    """
    import torch
    from torchvision import tv_tensors
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, "image file is missing") from None
    except OSError as error:
        raise DatasetError(path, f"cannot read image ({error})") from None
    if data[:2] == b"\xff\xd8":
        try:
            return tv_tensors.Image(
                decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            )
        except RuntimeError:
            pass  # truncated or corrupt: PIL says what is wrong
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(path, f"cannot decode image ({error})") from None
    return tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))


def to_png_base64(image) -> str:
    """``image`` (uint8 [3, H, W]) as base64 PNG text: lossless, and small enough to keep the few
    images a figure shows inside its JSON, so the figure is redrawn without the dataset."""
    import base64

    import torch
    from torchvision.io import encode_png

    return base64.b64encode(encode_png(image.as_subclass(torch.Tensor).contiguous()).numpy().tobytes()).decode("ascii")


def from_png_base64(text: str, where: str | Path = "figure data") -> tv_tensors.Image:
    """The uint8 [3, H, W] image of :func:`to_png_base64`; ``where`` names the file in errors."""
    import base64
    import binascii

    import torch
    from torchvision import tv_tensors
    from torchvision.io import ImageReadMode, decode_png

    try:
        data = base64.b64decode(text, validate=True)
        return tv_tensors.Image(decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB))
    except (binascii.Error, RuntimeError, TypeError, ValueError) as error:
        raise DatasetError(Path(where), f"embedded image is not base64 PNG ({error})") from None
