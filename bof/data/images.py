"""Reading images with errors that name the file: a missing, unreadable or truncated image."""

from __future__ import annotations

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
    """Decode to uint8 RGB [3, H, W]; grey, CMYK and palette images are converted."""
    import torch
    from torchvision import tv_tensors

    try:
        with Image.open(path) as image:
            pixels = np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise DatasetError(path, "image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(path, f"cannot decode image ({error})") from None
    return tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
