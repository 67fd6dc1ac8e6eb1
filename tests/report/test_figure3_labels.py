"""Figure 3's weight labels: each beside its box, none over another label or over another
box's edge, however the boxes overlap (``place_labels``), and drawn where it was placed."""

from __future__ import annotations

import itertools

import torch

from bof.report.tricks import draw_labelled_boxes, place_labels

EDGE = 2.0  # the drawn edge's half-width the layout keeps clear


def overlap(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def covers_an_edge(rect, box) -> bool:
    """Whether ``rect`` covers part of one of the four drawn edges of ``box``, written out here
    without the module's helpers."""
    x0, y0, x1, y1 = box
    horizontal = any(overlap(rect, (x0 - EDGE, y - EDGE, x1 + EDGE, y + EDGE)) for y in (y0, y1))
    vertical = any(overlap(rect, (x - EDGE, y0 - EDGE, x + EDGE, y1 + EDGE)) for x in (x0, x1))
    return horizontal or vertical


def check_layout(boxes, sizes, canvas_size, margin):
    rects = place_labels(boxes, sizes, canvas_size=canvas_size, margin=margin)
    assert len(rects) == len(boxes)
    for rect, (width, height) in zip(rects, sizes, strict=True):
        assert (rect[2] - rect[0], rect[3] - rect[1]) == (width, height)
    for a, b in itertools.combinations(rects, 2):
        assert not overlap(a, b), (a, b)
    for index, rect in enumerate(rects):
        for other, box in enumerate(boxes):
            if other != index:
                assert not covers_an_edge(rect, box), (index, rect, other, box)
    return rects


def test_labels_of_a_lone_box_sit_on_its_top_edge_from_outside():
    assert place_labels([[10, 30, 60, 70]], [(20, 12)], canvas_size=(100, 100), margin=14) == [(10, 18, 30, 30)]


def test_labels_of_overlapping_boxes_neither_overlap_nor_cover_edges():
    # three boxes nearly on top of each other: their labels at the same corner would collide
    boxes = [[10, 10, 50, 50], [12, 12, 52, 52], [14, 8, 54, 48]]
    rects = check_layout(boxes, [(24, 14)] * 3, (64, 64), 18)
    width, height, margin = 64, 64, 18
    for rect in rects:  # all found a place beside their box, none went to the side column
        assert -margin <= rect[0] and rect[2] <= width + margin and -margin <= rect[1] and rect[3] <= height + margin


def test_a_crowd_of_identical_boxes_goes_to_the_side_column():
    boxes = [[20, 20, 40, 40]] * 8
    rects = check_layout(boxes, [(30, 14)] * 8, (60, 60), 18)
    assert any(rect[0] > 60 + 18 for rect in rects)  # some labels are set aside, stacked


def test_many_random_overlapping_boxes():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        corners = torch.randint(0, 70, (6, 2), generator=generator).float()
        sides = torch.randint(8, 40, (6, 2), generator=generator).float()
        boxes = torch.cat([corners, (corners + sides).clamp(max=100)], dim=1).tolist()
        check_layout(boxes, [(26, 14)] * 6, (100, 100), 18)


def test_drawn_labels_carry_their_box_colour():
    image = torch.zeros(3, 48, 48, dtype=torch.uint8)
    boxes = torch.tensor([[4.0, 10.0, 40.0, 40.0], [6.0, 12.0, 42.0, 42.0]])
    drawn = draw_labelled_boxes(image, boxes, ["0.55", "0.45"], ["#ff0000", "#0000ff"], side=192)
    assert drawn.dtype == torch.uint8 and drawn.shape[0] == 3
    assert drawn.shape[1] > 192 and drawn.shape[2] >= 192  # the labels' margin is added to the enlarged image
    red = ((drawn[0] == 255) & (drawn[1] == 0) & (drawn[2] == 0)).sum()
    blue = ((drawn[0] == 0) & (drawn[1] == 0) & (drawn[2] == 255)).sum()
    assert red > 100 and blue > 100  # each label's patch (and its box), in its colour
