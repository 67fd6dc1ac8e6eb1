"""``bof show-tricks`` renders Figures 2, 3, 4 and 6a from the library's own functions."""

from __future__ import annotations

import pytest
from PIL import Image

from bof.cli import main
from bof.report.tricks import beta_pdf


def test_renders_the_four_figures(tiny_synth, tmp_path):
    assert main(["show-tricks", "--voc", str(tiny_synth / "VOCdevkit"), "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "figure2_mixup_classification.png",
        "figure3_mixup_detection.png",
        "figure4_beta_distributions.png",
        "figure6a_lr_schedules.png",
    ]
    for name in names:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.width > 300


def test_beta_density():
    assert beta_pdf(0.3, 1.0, 1.0) == pytest.approx(1.0)
    assert beta_pdf(0.5, 1.5, 1.5) == pytest.approx(1.2732395, rel=1e-6)  # 4/pi
    step = 1e-4
    assert sum(beta_pdf((i + 0.5) * step, 1.5, 1.5) for i in range(int(1 / step))) * step == pytest.approx(
        1.0, abs=1e-3
    )
