"""benchmarks/paper_cost.py, README's FLOP-based cost of the paper presets: its two-stage count is
the RoI head's upper bound whatever the random weights (not a count of chance), and YOLOv3's
count is the mean over the random shapes."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

from bof.pipeline import matrix

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import paper_cost  # noqa: E402


def mini_config(detector: str):
    preset = matrix.load_preset(ROOT / "config" / "mini.yaml")
    job = next(job for job in matrix.jobs(preset) if job.detector == detector)
    return matrix.train_config(preset, job)


def test_two_stage_count_does_not_depend_on_the_random_weights():
    config = mini_config("frcnn_r50")
    counts = []
    for seed in (1, 2):
        model = paper_cost.detector_model(config, 6)
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "rpn.head.bbox_pred" not in name:
                    parameter.normal_(0, 1)
        seen = []
        hook = model.detector.roi_heads.box_roi_pool.register_forward_hook(
            lambda module, inputs, output, seen=seen: seen.append(len(output))
        )
        counts.append(paper_cost.step_flops(model, 96, 128))
        hook.remove()
        # 128 RoIs sampled from the RPN's full 500 proposals (mini's CPU RPN keeps 500 in training)
        assert seen == [128]
    assert counts[0] == counts[1]


def test_a_jobs_cost_is_epochs_times_images_times_its_mean_size_cost_plus_its_evaluations():
    preset = matrix.load_preset(ROOT / "config" / "voc.yaml")
    job = next(job for job in matrix.jobs(preset) if "shapes" in job.combo)
    config = matrix.train_config(preset, job)

    class SizeCounter(paper_cost.Counter):
        """A training image costs its side in FLOPs, a test image 1000."""

        def __init__(self):
            pass

        def training_image(self, size):
            return size[0]

        def test_image(self, size):
            return 1000

    cost = paper_cost.training_cost(preset, job, SizeCounter(), (100, 10, 20))
    # voc's YOLOv3: 200 epochs, random shapes 320..608 every 32 px, validated every 10 epochs and at the end
    assert (config.optim.epochs, config.run.val_every) == (200, 10)
    assert cost.train_flops == 200 * 100 * statistics.mean(range(320, 609, 32))
    assert cost.val_flops == (20 + 1) * 10 * 1000


def test_a_two_stage_image_is_4_to_3_after_the_presets_resize():
    mini = mini_config("frcnn_r50")
    assert paper_cost.job_sizes(mini) == ((mini.model.min_size, round(mini.model.min_size * 4 / 3)),)
    preset = matrix.load_preset(ROOT / "config" / "coco.yaml")
    job = next(job for job in matrix.jobs(preset) if job.detector == "frcnn_r50")
    assert paper_cost.job_sizes(matrix.train_config(preset, job)) == ((800, 1067),)
