"""YOLOv3 targets and loss: assignment, ignore rule, weights, smoothing, decoding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bof.models.yolo_loss import _assign, _gather_targets, decode, shape_iou, yolo_loss
from bof.models.yolov3 import PAPER_ANCHORS, YOLOv3

NUM_CLASSES = 3
ANCHORS = torch.tensor(PAPER_ANCHORS, dtype=torch.float32)


def zero_predictions(size: int, batch: int = 1) -> list[torch.Tensor]:
    return [torch.zeros(batch, 3, 5 + NUM_CLASSES, size // s, size // s, requires_grad=True) for s in (8, 16, 32)]


def box_at(cx, cy, w, h):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def target(*boxes, labels=None, weights=None):
    t = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels or [0] * len(boxes)),
    }
    if weights is not None:
        t["weights"] = torch.tensor(weights, dtype=torch.float32)
    return t


def test_shape_iou():
    iou = shape_iou(torch.tensor([[10.0, 20.0]]), torch.tensor([[10.0, 20.0], [20.0, 10.0], [5.0, 10.0]]))
    assert iou.tolist() == [[pytest.approx(1.0), pytest.approx(100 / 300), pytest.approx(0.25)]]


@pytest.mark.parametrize("anchor_index", range(9))
def test_each_box_goes_to_its_best_anchor_and_centre_cell(anchor_index):
    w, h = PAPER_ANCHORS[anchor_index]
    cx, cy = 203.0, 150.0
    predictions = zero_predictions(416)
    found = _assign(_gather_targets([target(box_at(cx, cy, w, h))], "cpu"), ANCHORS, predictions, 416)
    level, anchor = divmod(anchor_index, 3)
    stride = 8 * 2**level
    assert found["positive"].tolist() == [True]
    assert [int(found[key]) for key in ("level", "anchor", "row", "column")] == [
        level,
        anchor,
        int(cy // stride),
        int(cx // stride),
    ]
    assert found["center"].tolist() == [pytest.approx([cx / stride - cx // stride, cy / stride - cy // stride])]
    assert found["scale"].abs().max() < 1e-5  # log(w / anchor_w) = 0
    assert found["box_weight"].item() == pytest.approx(2 - w * h / 416**2)


@pytest.mark.parametrize("size", [320, 416, 608])
def test_anchors_are_fixed_pixels_at_every_input_size(size):
    """Darknet/GluonCV: a box of anchor 4's pixel size is anchor 4's positive at any random
    shape, with a zero scale target; the model's anchors do not follow the input size."""
    model = YOLOv3(NUM_CLASSES, width=0.125, depth=0.34, input_size=416)
    assert model.anchors.tolist() == [list(map(float, pair)) for pair in PAPER_ANCHORS]
    w, h = PAPER_ANCHORS[4]
    found = _assign(
        _gather_targets([target(box_at(160, 160, w, h))], "cpu"), model.anchors, zero_predictions(size), size
    )
    assert found["positive"].tolist() == [True] and found["level"].tolist() == [1]
    assert found["anchor"].tolist() == [1] and found["scale"].abs().max() < 1e-5


def test_two_boxes_on_one_anchor_and_cell_the_later_wins():
    w, h = PAPER_ANCHORS[8]
    gt = _gather_targets([target(box_at(200, 200, w, h), box_at(205, 210, w, h), labels=[1, 2])], "cpu")
    found = _assign(gt, ANCHORS, zero_predictions(416), 416)
    assert found["level"].tolist() == [2, 2] and found["positive"].tolist() == [False, True]


def test_objectness_ignores_good_non_positive_predictions():
    """A non-positive prediction decoding onto the box (IoU > 0.7) leaves the objectness loss,
    however confident it is; every other non-positive is pushed towards 0."""
    size = 416
    w, h = PAPER_ANCHORS[6]
    cx = cy = 200.0  # stride-32 cell 6; the positive is anchor 6 there
    gt = torch.tensor([box_at(cx, cy, w, h)])
    predictions = zero_predictions(size)
    with torch.no_grad():  # anchor 7 in the same cell, shaped and placed onto the box, very confident
        cell = predictions[2][0, 1, :, 6, 6]
        big_w, big_h = PAPER_ANCHORS[7]
        cell[0] = cell[1] = torch.logit(torch.tensor(cx / 32 - 6))
        cell[2], cell[3] = math.log(w / big_w), math.log(h / big_h)
        cell[4] = 6.0
    loss = yolo_loss(predictions, [target(gt[0].tolist())], ANCHORS, size)["loss_objectness"]
    from torchvision.ops import box_iou

    expected = 0.0
    for level, prediction in enumerate(predictions):
        boxes = decode(prediction.detach(), ANCHORS[3 * level : 3 * level + 3], size / prediction.shape[-1]).reshape(
            -1, 4
        )
        logits = prediction.detach()[0, :, 4].reshape(-1)
        kept = box_iou(boxes, gt)[:, 0] <= 0.7
        expected += F.softplus(logits[kept]).sum().item()  # BCE(logit, 0)
    positive = predictions[2].detach()[0, 0, 4, 6, 6]
    expected += F.softplus(-positive).item()  # the positive, target 1 (its box overlaps too: counted once)
    assert box_iou(decode(predictions[2].detach(), ANCHORS[6:9], 32.0)[0, 1, 6, 6][None], gt).item() > 0.99
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    without_rule = yolo_loss(predictions, [target(gt[0].tolist())], ANCHORS, size, ignore_iou=1.1)["loss_objectness"]
    assert without_rule.item() > loss.item() + 5.0  # softplus(6) would have been paid


def test_mixup_weight_scales_every_positive_term_and_box_weight_is_applied():
    size = 416
    w, h = PAPER_ANCHORS[3]
    predictions = [
        p.detach().normal_(generator=torch.Generator().manual_seed(i)).requires_grad_(True)
        for i, p in enumerate(zero_predictions(size))
    ]
    full = yolo_loss(predictions, [target(box_at(100, 100, w, h), labels=[2], weights=[1.0])], ANCHORS, size)
    half = yolo_loss(predictions, [target(box_at(100, 100, w, h), labels=[2], weights=[0.5])], ANCHORS, size)
    for name in ("loss_center", "loss_scale", "loss_class"):
        assert half[name].item() == pytest.approx(0.5 * full[name].item(), rel=1e-5)
    positive = predictions[1][0, 0, :, 100 // 16, 100 // 16]
    center_target = torch.tensor([100 / 16 - 6, 100 / 16 - 6])
    expected = (2 - w * h / size**2) * F.binary_cross_entropy_with_logits(positive[:2], center_target, reduction="sum")
    assert full["loss_center"].item() == pytest.approx(expected.item(), rel=1e-5)
    objectness_drop = F.binary_cross_entropy_with_logits(positive[4], torch.tensor(1.0)).item() * 0.5
    assert full["loss_objectness"].item() - half["loss_objectness"].item() == pytest.approx(
        objectness_drop, abs=2e-3
    )  # float32 sums of ~1e4


def test_label_smoothing_on_the_class_targets():
    size = 416
    w, h = PAPER_ANCHORS[0]
    predictions = zero_predictions(size)
    with torch.no_grad():
        predictions[0][0, 0, 5:, 5, 5] = torch.tensor([2.0, -1.0, 0.5])
    eps = 1 / 40
    loss = yolo_loss(
        predictions,
        [target(box_at(5 * 8 + 4, 5 * 8 + 4, w, h), labels=[1])],
        ANCHORS,
        size,
        label_smoothing=eps,
    )
    expected = F.binary_cross_entropy_with_logits(
        torch.tensor([2.0, -1.0, 0.5]), torch.tensor([eps, 1 - eps, eps]), reduction="sum"
    )
    assert loss["loss_class"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_images_without_boxes_and_gradients():
    predictions = zero_predictions(64, batch=2)
    loss = yolo_loss(predictions, [target(), target(box_at(30, 30, 20, 20))], ANCHORS, 64)
    assert all(torch.isfinite(v) for v in loss.values())
    sum(loss.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in predictions)


def test_decode_and_postprocess_roundtrip():
    model = YOLOv3(NUM_CLASSES, width=0.125, depth=0.34, input_size=64).eval()
    scores = torch.zeros(5, NUM_CLASSES)
    scores[0, 1], scores[1, 1], scores[2, 2], scores[3, 0] = 0.9, 0.8, 0.7, 0.005
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 1, 1]])
    result = model.postprocess(boxes, scores)
    assert result["labels"].tolist() == [1, 2]  # the 0.8 box is suppressed by NMS (IoU 0.81); 0.005 is below threshold
    assert result["scores"].tolist() == pytest.approx([0.9, 0.7])
    detections = model([torch.rand(3, 50, 80)])[0]
    assert detections["boxes"].shape[1] == 4 and len(detections["boxes"]) <= 100
    if len(detections["boxes"]):
        assert detections["boxes"][:, 2].max() <= 80 + 1e-3 and detections["boxes"][:, 3].max() <= 50 + 1e-3


def test_the_same_box_in_two_images_is_two_positives():
    w, h = PAPER_ANCHORS[4]
    box = box_at(200, 120, w, h)
    gt = _gather_targets([target(box), target(box)], "cpu")
    found = _assign(gt, ANCHORS, zero_predictions(416, 2), 416)
    assert gt["image"].tolist() == [0, 1] and found["positive"].tolist() == [True, True]
    assert found["level"].tolist() == [1, 1] and found["anchor"].tolist() == [1, 1]
    assert found["row"].tolist() == [120 // 16] * 2 and found["column"].tolist() == [200 // 16] * 2


def test_images_of_a_batch_do_not_touch_each_others_loss():
    """Every term is a per-image sum averaged over the batch: the batch loss times its size is
    the sum of the single-image losses. And no box of one image enters another's ignore mask:
    both images predict exactly image b's second box at the same cell and anchor (IoU 1, above
    the 0.7 ignore threshold; not that box's assigned anchor): b ignores it, a trains it as a negative."""
    size = 416
    generator = torch.Generator().manual_seed(7)
    predictions = [torch.randn(2, 3, 5 + NUM_CLASSES, size // s, size // s, generator=generator) for s in (8, 16, 32)]
    w, h = PAPER_ANCHORS[5]
    only_in_b = box_at(300, 264, 80, 40)  # stride 16: column 18 + 0.75, row 16 + 0.5; its anchor is 4
    anchor_w, anchor_h = PAPER_ANCHORS[5]  # plant the prediction on anchor 5 (level 1, slot 2)
    planted = torch.tensor([math.log(0.75 / 0.25), 0.0, math.log(80 / anchor_w), math.log(40 / anchor_h)])
    predictions[1][:, 2, :4, 16, 18] = planted
    assert decode(predictions[1], ANCHORS[3:6], 16.0)[:, 2, 16, 18].tolist() == [pytest.approx(only_in_b, abs=1e-3)] * 2
    targets = [
        target(box_at(100, 100, w, h), labels=[1], weights=[0.7]),
        target(box_at(100, 100, w, h), only_in_b, labels=[2, 0], weights=[1.0, 0.4]),
    ]
    predictions = [p.requires_grad_() for p in predictions]
    both = yolo_loss(predictions, targets, ANCHORS, size)
    both["loss_objectness"].backward()
    objectness_grad = predictions[1].grad[:, 2, 4, 16, 18]
    assert objectness_grad[1].item() == 0.0  # ignored in image b
    expected = torch.sigmoid(predictions[1][0, 2, 4, 16, 18]).item() / 2  # a negative in image a, / batch
    assert objectness_grad[0].item() == pytest.approx(expected, rel=1e-5)
    for name in both:
        alone = sum(
            yolo_loss([p[index : index + 1] for p in predictions], [targets[index]], ANCHORS, size)[name]
            for index in range(2)
        )
        assert (2 * both[name]).item() == pytest.approx(alone.item(), rel=1e-5), name


def test_nms_is_per_class_keeps_100_and_drops_scores_below_001():
    """GluonCV's YOLOv3 post-processing by behaviour, not by attribute: the same box in two classes
    survives in both, at most 100 detections an image are kept (the best), and a score of 0.009 is
    dropped where 0.01 stays."""
    model = YOLOv3(NUM_CLASSES, width=0.125, depth=0.34, input_size=64).eval()
    scores = torch.zeros(2, NUM_CLASSES)
    scores[0, 0], scores[1, 1] = 0.9, 0.8
    kept = model.postprocess(torch.tensor([[0.0, 0, 100, 100], [0.0, 0, 100, 100]]), scores)
    assert sorted(kept["labels"].tolist()) == [0, 1]
    corners = torch.arange(150.0)[:, None] * 20
    apart = torch.cat([corners, corners, corners + 10, corners + 10], dim=1)  # 150 boxes, none overlapping
    scores = torch.zeros(150, NUM_CLASSES)
    scores[:, 2] = torch.linspace(0.99, 0.5, 150)
    kept = model.postprocess(apart, scores)
    assert kept["scores"].tolist() == pytest.approx(torch.linspace(0.99, 0.5, 150)[:100].tolist())
    scores = torch.zeros(2, NUM_CLASSES)
    scores[:, 0] = torch.tensor([0.01, 0.009])
    assert model.postprocess(apart[:2], scores)["scores"].tolist() == pytest.approx([0.01])


def test_decode_at_an_off_diagonal_cell_of_a_non_square_grid():
    prediction = torch.zeros(1, 3, 5 + NUM_CLASSES, 4, 6)  # 4 rows, 6 columns
    prediction[0, 2, 0, 1, 3] = 1.0  # tx at row 1, column 3
    prediction[0, 2, 1, 1, 3] = -0.5  # ty
    prediction[0, 2, 2, 1, 3] = math.log(2.0)  # tw: twice the anchor
    anchors = torch.tensor([[10.0, 20.0], [30.0, 40.0], [50.0, 70.0]])
    box = decode(prediction, anchors, 16.0)[0, 2, 1, 3]
    cx, cy = (torch.sigmoid(torch.tensor(1.0)).item() + 3) * 16, (torch.sigmoid(torch.tensor(-0.5)).item() + 1) * 16
    assert box.tolist() == pytest.approx([cx - 50, cy - 35, cx + 50, cy + 35])


def test_nms_at_iou_045_and_top_k_400():
    model = YOLOv3(NUM_CLASSES, width=0.125, depth=0.34, input_size=64).eval()
    assert (model.nms_iou, model.nms_topk, model.detections_per_image, model.score_threshold) == (0.45, 400, 100, 0.01)

    def overlap(iou):  # a box beside [0, 0, 100, 100] whose IoU with it is `iou`
        shift = 100 * (1 - iou) / (1 + iou)
        return [shift, 0.0, 100 + shift, 100.0]

    scores = torch.zeros(3, NUM_CLASSES)
    scores[:, 0] = torch.tensor([0.9, 0.8, 0.7])
    boxes = torch.tensor([[0.0, 0, 100, 100], overlap(0.46), overlap(0.44)])
    assert model.postprocess(boxes, scores)["scores"].tolist() == pytest.approx([0.9, 0.7])  # 0.46 suppressed
    # 400 near-copies of one box outrank a lone box elsewhere: top-k leaves the lone box out
    copies = torch.tensor([[0.0, 0, 100, 100]]).repeat(400, 1) + torch.rand(
        400, 1, generator=torch.Generator().manual_seed(0)
    )
    boxes = torch.cat([copies, torch.tensor([[300.0, 300, 350, 350]])])
    scores = torch.zeros(401, NUM_CLASSES)
    scores[:, 1] = torch.cat([torch.linspace(0.9, 0.5, 400), torch.tensor([0.4])])
    kept = model.postprocess(boxes, scores)
    assert len(kept["scores"]) == 1 and kept["scores"].item() == pytest.approx(0.9)
    model.nms_topk = 401
    assert len(model.postprocess(boxes, scores)["scores"]) == 2


# (input size, images' box counts, label smoothing, mixup weights) and what the per-image loop
# of bof 41caee0 (indices gathered with nonzero/unique, one IoU per image) computed for them:
# the four terms, and |gradient| summed over the objectness channel and over the other channels
LOOP_CASES = [(416, [3, 0], 0.0, False), (416, [5, 1, 7], 0.01, True), (320, [0, 0, 2, 9], 0.0, True)]
LOOP_CASES += [(608, [20, 12], 0.01, False), (96, [4, 3, 2, 6], 0.0, True), (416, [0], 0.0, False)]
LOOP_RESULTS = [
    ([11400.6494140625, 7.719868183135986, 5.085699081420898, 5.022216796875], 5316.855524, 8.413260),
    ([11331.6923828125, 6.203787326812744, 9.383308410644531, 11.14050579071045], 5310.703141, 12.248942),
    ([6670.56201171875, 3.9849908351898193, 6.677998065948486, 7.280282974243164], 3131.857056, 9.560514),
    ([24174.74609375, 75.974365234375, 104.95291137695312, 84.4571533203125], 11366.780015, 125.573140),
    ([601.3232421875, 6.383427619934082, 10.744394302368164, 10.69218635559082], 281.085451, 13.889559),
    ([11297.7236328125, 0.0, 0.0, 0.0], 5307.331938, 0.0),
]


def loop_case_inputs():
    generator = torch.Generator().manual_seed(0)
    for size, counts, smoothing, weighted in LOOP_CASES:
        predictions = [
            torch.randn(len(counts), 3, 5 + 6, size // s, size // s, generator=generator) * 2 for s in (8, 16, 32)
        ]
        targets = []
        for count in counts:
            centre = torch.rand(count, 2, generator=generator) * size
            wh = torch.rand(count, 2, generator=generator) * size * 0.6 + 4
            boxes = torch.cat([centre - wh / 2, centre + wh / 2], 1)
            if count >= 3:  # the first box again, half a pixel off: two boxes on one anchor and cell
                boxes[2] = boxes[0] + 0.5
            one = {"boxes": boxes, "labels": torch.randint(0, 6, (count,), generator=generator)}
            if weighted:
                one["weights"] = torch.rand(count, generator=generator)
            targets.append(one)
        yield [p.requires_grad_() for p in predictions], targets, size, smoothing


def test_losses_and_gradients_are_those_of_the_per_image_loop():
    """Carrying every box through every level with a mask changed no number: the terms and
    gradients of the earlier per-image loop, to float32's last digit (the class term of one case
    sums in another order: 1 ulp)."""
    for (predictions, targets, size, smoothing), (terms, objectness, others) in zip(
        loop_case_inputs(), LOOP_RESULTS, strict=True
    ):
        losses = yolo_loss(predictions, targets, ANCHORS, size, label_smoothing=smoothing)
        assert [losses[name].item() for name in ("loss_objectness", "loss_center", "loss_scale", "loss_class")] == [
            pytest.approx(value, rel=2e-7, abs=0) for value in terms
        ]
        sum(losses.values()).backward()
        gradient_objectness = sum(float(p.grad[:, :, 4].double().abs().sum()) for p in predictions)
        gradient_all = sum(float(p.grad.double().abs().sum()) for p in predictions)
        assert gradient_objectness == pytest.approx(objectness, abs=1e-6)
        assert gradient_all - gradient_objectness == pytest.approx(others, abs=1e-6)


class CPUTensorArguments(TorchDispatchMode):
    """Records every operation that receives a CPU tensor (on a GPU: a blocking copy)."""

    def __init__(self):
        super().__init__()
        self.operations: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flat, _ = tree_flatten((args, kwargs or {}))
        if any(isinstance(value, torch.Tensor) and value.device.type == "cpu" for value in flat):
            self.operations.append(str(func))
        return func(*args, **(kwargs or {}))


def test_the_loss_neither_reads_back_from_the_device_nor_takes_cpu_tensors():
    """YOLOv3's forward and backward with the loss (what the model adds to a training step; the
    GradScaler's own check stays) on the `meta` device, where tensors have shapes but no values:
    any `.item()`, `nonzero`, `unique` or boolean indexing (each a GPU->CPU sync on CUDA) raises
    there. Meta silently accepts some CPU operands (a 0-d tensor, CPU indices: a blocking copy on
    CUDA), so a dispatch mode records every operation given a CPU tensor: none is."""
    model = YOLOv3(NUM_CLASSES, width=0.125, depth=0.34, input_size=64).to("meta").train()
    images = torch.rand(2, 3, 64, 64, device="meta")
    targets = [
        {
            "boxes": torch.rand(3, 4, device="meta"),
            "labels": torch.zeros(3, dtype=torch.long, device="meta"),
            "weights": torch.ones(3, device="meta"),
        },
        {"boxes": torch.rand(0, 4, device="meta"), "labels": torch.zeros(0, dtype=torch.long, device="meta")},
    ]
    model.label_smoothing = 0.01
    with CPUTensorArguments() as recorder:
        torch.ones(2, device="meta") + torch.tensor(1.0)  # what the recorder is for: meta lets it pass
        assert "aten.add.Tensor" in recorder.operations
        recorder.operations.clear()
        losses = model(images, targets)
        sum(losses.values()).backward()
    assert recorder.operations == []
    assert all(value.device.type == "meta" and value.shape == () for value in losses.values())
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in model.heads.parameters())


def test_an_overflow_outside_the_positives_stays_out_of_the_loss():
    """Each box is looked up at every level and masked where it is no positive: an inf (float16
    overflow under AMP) in the class or box channels of such a cell changes no term, no gradient."""
    w, h = PAPER_ANCHORS[7]  # a level-2 box (stride 32): row 5, column 6 there, anchor 1
    targets = [target(box_at(200, 170, w, h), labels=[1])]
    clean = [p.detach().clone().requires_grad_() for p in zero_predictions(416)]
    overflowed = [p.detach().clone() for p in clean]
    overflowed[0][0, 1, [0, 3, 5, 6], 5, 6] = float("inf")  # the same cell of level 0, where it is no positive
    overflowed = [p.requires_grad_() for p in overflowed]
    expected, got = (yolo_loss(p, targets, ANCHORS, 416) for p in (clean, overflowed))
    assert {k: v.item() for k, v in got.items()} == {k: v.item() for k, v in expected.items()}
    sum(got.values()).backward()
    sum(expected.values()).backward()
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(clean, overflowed, strict=True))
