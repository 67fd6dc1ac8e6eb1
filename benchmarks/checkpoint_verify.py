"""What verifying a checkpoint costs: the CRC-32 check of every record of ``torch.save``'s zip
archive (bof.engine.checkpoint.verify_checkpoint) against ``torch.load(weights_only=True)`` of
the same file, side by side, and the second generation's save (``checkpoint.prev.pt``: one
hard link and two renames) against a plain atomic save.

    python benchmarks/checkpoint_verify.py [--megabytes 512] [--rounds 5]

A YOLOv3 training checkpoint (weights and SGD momentum) is about 470 MB; Faster R-CNN R50's
C4 one about 270 MB. The first read of each round comes from the page cache, as a resume right
after a kill reads it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bof.engine.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # a state dict like a detector's: many tensors of mixed sizes
    count = 160
    per_tensor = args.megabytes * 2**20 // 4 // count
    state = {"model": {f"layer{i}.weight": torch.randn(per_tensor) for i in range(count)}, "epoch": 3}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.pt"
        save_checkpoint(state, path)
        rows = {"verify (CRC-32s)": [], "torch.load": [], "load_checkpoint": [], "save": [], "save + .prev": []}
        for _ in range(args.rounds):
            rows["verify (CRC-32s)"].append(timed(lambda: verify_checkpoint(path)))
            rows["torch.load"].append(timed(lambda: torch.load(path, map_location="cpu", weights_only=True)))
            rows["load_checkpoint"].append(timed(lambda: load_checkpoint(path)))
            rows["save"].append(timed(lambda: save_checkpoint(state, path)))
            rows["save + .prev"].append(
                timed(lambda: save_checkpoint(state, path, previous=path.with_name("checkpoint.prev.pt")))
            )
    medians = {name: statistics.median(times) for name, times in rows.items()}
    print(f"checkpoint of {args.megabytes} MB, {count} tensors, median of {args.rounds} rounds")
    for name, seconds in medians.items():
        print(f"  {name:<18} {seconds * 1000:8.1f} ms")
    print(f"verify / torch.load:           {medians['verify (CRC-32s)'] / medians['torch.load']:.2f}")
    print(f"load_checkpoint / torch.load:  {medians['load_checkpoint'] / medians['torch.load']:.2f}")
    print(f"save + .prev / save:           {medians['save + .prev'] / medians['save']:.2f}")


if __name__ == "__main__":
    main()
