"""``dettui infer`` labels (issue 7.13): on a small image with crowded boxes no label covers
another one, every label stays inside the image, and the best detections choose first."""

from __future__ import annotations

import itertools

from PIL import Image

from engine.drawing import _overlaps, draw_detections, place_labels


def test_labels_of_crowded_boxes_never_overlap_and_stay_inside() -> None:
    # three boxes whose tops are within a few pixels: labels above each would pile up
    boxes = [(4.0, 20.0, 40.0, 50.0), (8.0, 22.0, 44.0, 60.0), (6.0, 18.0, 30.0, 40.0),
             (50.0, 2.0, 63.0, 12.0)]
    sizes = [(38.0, 12.0)] * 4
    rects = place_labels(boxes, sizes, (64, 64))
    for a, b in itertools.combinations(rects, 2):
        assert not _overlaps(a, b), (a, b)
    for x0, y0, x1, y1 in rects:
        assert min(x0, y0) >= 0 and max(x1, y1) <= 64
    assert rects[0] == (4.0, 8.0, 42.0, 20.0)  # the first keeps the spot above its box


def test_draw_detections_paints_each_label_where_it_was_placed() -> None:
    image = Image.new("RGB", (96, 96), (255, 255, 255))
    detections = [((10.0, 30.0, 60.0, 80.0), 0.91, 1), ((12.0, 32.0, 70.0, 90.0), 0.85, 2),
                  ((14.0, 28.0, 50.0, 60.0), 0.40, 1)]
    assert draw_detections(image, detections, ["circle", "square"]) == 3
    # the labels' background boxes: three disjoint coloured areas above/inside the boxes
    coloured = {image.getpixel((x, y)) for x in range(96) for y in range(96)}
    assert len(coloured - {(255, 255, 255), (0, 0, 0)}) >= 2
