"""Published ImageNet backbones: the weights the paper's Tables 1-4 start from, without weeks of
pretraining (Tables 5-6, which are about pretraining, keep ``bof pretrain``).

* ResNet-50 and ResNet-101: torchvision's ``IMAGENET1K_V1`` weights (GluonCV's ``resnet50_v1b``,
  the paper's, has torchvision's layout: the stride on the 3x3 conv). torchvision pins the first
  8 hex digits of each file's SHA-256 in its name; bof checks them, as torch.hub does.
* Darknet-53: the original Darknet weights, ``darknet53.conv.74`` (Redmon & Farhadi 2018, the
  network YOLOv3 and GluonCV's ``darknet53`` define: conv-BN-LeakyReLU(0.1) units, linear
  shortcuts), read from Darknet's own binary format.

``model.pretrained: imagenet`` loads the file from torch.hub's cache (``$TORCH_HOME/hub/checkpoints``,
where torchvision's own ``weights=`` keeps these very files), fetching it there with its checksum
verified when it is missing and pinned; ``bof fetch-backbone`` puts it there from the publisher or,
on a cluster without network, from a local copy (verified too).
"""

from __future__ import annotations

import http.client
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bof.errors import BofError
from bof.io import sha256 as file_sha256


@dataclass(frozen=True)
class Published:
    url: str
    sha256: str | None  # the digest's hex (or its first characters, as torchvision pins); None: not pinned
    top1: float  # ImageNet top-1, %, as its publisher reports it
    source: str


PUBLISHED = {
    "resnet50": Published(
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "0676ba61",
        76.13,
        "torchvision ResNet50_Weights.IMAGENET1K_V1",
    ),
    "resnet101": Published(
        "https://download.pytorch.org/models/resnet101-63fe2227.pth",
        "63fe2227",
        77.374,
        "torchvision ResNet101_Weights.IMAGENET1K_V1",
    ),
    # The SHA-256 of darknet53.conv.74 could not be read where this was written (no network):
    # until it is pinned here, fetching it asks for the digest of the file the user trusts.
    "darknet53": Published(
        "https://pjreddie.com/media/files/darknet53.conv.74",
        None,
        77.2,
        "Redmon & Farhadi, YOLOv3 (2018), Table 2, at 256 px",
    ),
}


def published(backbone: str) -> Published:
    if backbone not in PUBLISHED:
        raise BofError(f"no published ImageNet weights for backbone '{backbone}' (known: {', '.join(PUBLISHED)})")
    return PUBLISHED[backbone]


def verify(path: str | Path, expected: str) -> Path:
    """``path``, once its SHA-256 starts with ``expected``; one line naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise BofError(f"{path}: backbone weights file is missing")
    found = file_sha256(path)
    if not found.startswith(expected.lower()):
        raise BofError(f"{path}: SHA-256 {found} does not match the pinned {expected}: a different or damaged file")
    return path


def published_path(backbone: str) -> Path:
    """Where the published file is kept: torch.hub's checkpoint cache, under the publisher's file name."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(published(backbone).url)


def fetch(
    backbone: str, out: str | Path | None = None, *, source: str | Path | None = None, sha256: str | None = None
) -> Path:
    """The backbone's published weights at ``out``, checksum verified: copied from ``source`` (a
    local file, for clusters without network) or downloaded from the publisher (torch.hub's
    download); a file already there that verifies is kept. ``sha256`` (64 hex digits) supplies the
    digest where none is pinned, and must agree with a pinned one."""
    entry = published(backbone)
    if sha256 is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise BofError(f"--sha256 must be the 64 hex digits of a SHA-256, got {sha256!r}")
        if entry.sha256 is not None and not sha256.lower().startswith(entry.sha256):
            raise BofError(f"{backbone}: --sha256 {sha256} contradicts the pinned {entry.sha256} of {entry.url}")
    expected = sha256 or entry.sha256
    if expected is None:
        raise BofError(
            f"{backbone}: bof pins no SHA-256 for {entry.url} yet; check the file you trust and give its "
            f"digest: bof fetch-backbone {backbone} --sha256 HEX"
        )
    out = Path(out) if out is not None else published_path(backbone)
    if source is None and out.is_file() and file_sha256(out).startswith(expected.lower()):
        return out  # kept: a new copy would make every training that reads it out of date
    out.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own: processes fetching at once (ranks under torchrun) do not share a partial file
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(handle)
    partial = Path(name)
    try:
        if source is not None:
            partial.write_bytes(verify(source, expected).read_bytes())
        else:
            download(entry.url, partial, backbone)
        verify(partial, expected)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o666 & ~umask)  # mkstemp's 0600 would hide a shared cache's file from the others
    partial.replace(out)
    return out


def download(url: str, path: Path, backbone: str) -> None:
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=None, progress=False)
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        raise BofError(
            f"{url}: cannot download ({error}); without network, copy the file to this machine and give its "
            f"path: bof fetch-backbone {backbone} --from FILE"
        ) from None


# --- the publishers' formats -> bof's backbones ---


def resnet_state(path: str | Path) -> dict[str, torch.Tensor]:
    """torchvision's ResNet file: bof's ResNet body is torchvision's, key for key."""
    return torch.load(path, map_location="cpu", weights_only=True)


def darknet_units(backbone: nn.Module) -> list[nn.Sequential]:
    """bof's Darknet-53 conv-BN units in Darknet's file order (the stem, then each stage's
    downsampling conv and its residuals' 1x1 and 3x3 convs): the order of registration."""
    return [module for module in backbone.modules() if isinstance(module, nn.Sequential) and hasattr(module, "bn")]


# Darknet-53's classifier, after the 52 convs of darknet53.conv.74: a 1x1 conv of 1024 -> 1000 with biases
CLASSIFIER_WEIGHTS = 1024 * 1000 + 1000


def darknet_state(path: str | Path, backbone: nn.Module) -> dict[str, torch.Tensor]:
    """A Darknet ``.weights`` file (``darknet53.conv.74``, or the full classifier's
    ``darknet53.weights``, whose classifier is left out) as ``backbone``'s state dict. The file: three int32 (major, minor,
    revision), the images seen (int64 from version 0.2 on, else int32), then for each conv layer
    with batch norm its BN biases, scales, rolling means and variances, then its kernel, float32."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12:
        raise BofError(f"{path}: not a Darknet weights file ({len(data)} bytes)")
    major, minor, _ = np.frombuffer(data[:12], dtype="<i4")
    header = 20 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 16
    values = np.frombuffer(data[header : header + (len(data) - header) // 4 * 4], dtype="<f4")
    units = darknet_units(backbone)
    needed = sum(unit.conv.weight.numel() + 4 * unit.bn.num_features for unit in units)
    if len(values) not in (needed, needed + CLASSIFIER_WEIGHTS):
        raise BofError(
            f"{path}: holds {len(values)} weights, Darknet-53's file {needed} (its classifier's "
            f"{needed + CLASSIFIER_WEIGHTS}): not its ImageNet weights"
        )
    state, offset, names = {}, 0, {id(module): name for name, module in backbone.named_modules()}
    for unit in units:
        prefix, channels = names[id(unit)], unit.bn.num_features
        for key in ("bias", "weight", "running_mean", "running_var"):  # biases, scales, rolling mean, variance
            state[f"{prefix}.bn.{key}"] = torch.from_numpy(values[offset : offset + channels].copy())
            offset += channels
        shape = unit.conv.weight.shape
        state[f"{prefix}.conv.weight"] = torch.from_numpy(values[offset : offset + shape.numel()].copy()).view(shape)
        offset += shape.numel()
    return state


def load_published(backbone: str, body: nn.Module) -> Path:
    """Load the published weights (`published_path`; fetched when missing and a checksum is pinned,
    verified when one is) into ``body``: bof's Darknet-53, or a ResNet body (torchvision's keys)."""
    entry, path = published(backbone), published_path(backbone)
    if not path.exists():
        if entry.sha256 is None:
            raise BofError(
                f"{path}: {backbone}'s published weights are missing; fetch them once: bof fetch-backbone {backbone} "
                f"--sha256 HEX (from {entry.url}), or --from FILE on a machine without network"
            )
        fetch(backbone)
    elif entry.sha256 is not None:
        verify(path, entry.sha256)
    if backbone == "darknet53":
        missing, unexpected = body.load_state_dict(darknet_state(path, body), strict=False)
        missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    else:
        missing, unexpected = body.load_state_dict(resnet_state(path), strict=False)
    if missing or unexpected:
        raise BofError(f"{path}: does not fit bof's {backbone} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return path
