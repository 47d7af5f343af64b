"""COCOEvaluator: numbers identical to pycocotools, rescaling to the original image, label ->
category mapping, per-class AP, and the edge cases (no detections, images without objects)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from engine.evaluation.coco import METRIC_NAMES, COCOEvaluator

# --------------------------------------------------------------------------- helpers


def synthetic_json() -> dict:
    """Four images (one without objects), three categories with non-contiguous ids."""
    images = [{"id": i, "width": 200, "height": 120, "file_name": f"{i}.png"}
              for i in (10, 11, 12, 13)]
    boxes = [  # image, category, xywh
        (10, 7, [10, 10, 40, 30]), (10, 3, [100, 50, 60, 60]), (10, 7, [150, 5, 20, 18]),
        (11, 3, [0, 0, 120, 110]), (11, 9, [130, 60, 30, 40]),
        (12, 9, [50, 40, 12, 14]), (12, 9, [80, 40, 25, 25]), (12, 7, [5, 60, 70, 50]),
    ]  # image 13 has no objects
    annotations = [{"id": k + 1, "image_id": img, "category_id": cat, "bbox": bbox,
                    "area": bbox[2] * bbox[3], "iscrowd": 0}
                   for k, (img, cat, bbox) in enumerate(boxes)]
    categories = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 9, "name": "emu"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def label_mapping(coco: dict) -> tuple[dict[int, int], list[str]]:
    """Labels 1..K in category-id order, as the data pipeline assigns them."""
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    return {k + 1: c["id"] for k, c in enumerate(cats)}, [c["name"] for c in cats]


def fake_detections(coco: dict, seed: int, jitter: float = 0.08, false_positives: int = 2
                    ) -> dict[int, list[tuple[list[float], float, int]]]:
    """Per image: GT boxes moved by up to ``jitter`` of their size (some dropped, some with a
    wrong class) plus random false positives; (xywh in original pixels, score, category id)."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in coco["categories"]]
    sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    out: dict[int, list] = {img_id: [] for img_id in sizes}
    for ann in coco["annotations"]:
        if rng.random() < 0.1:
            continue  # a miss
        x, y, w, h = ann["bbox"]
        dx, dy, dw, dh = rng.uniform(-jitter, jitter, 4) * [w, h, w, h]
        cat = ann["category_id"] if rng.random() > 0.1 else int(rng.choice(cat_ids))
        out[ann["image_id"]].append(([x + dx, y + dy, max(1.0, w + dw), max(1.0, h + dh)],
                                     float(rng.uniform(0.3, 1.0)), cat))
    for img_id, (width, height) in sizes.items():
        for _ in range(false_positives):
            w, h = rng.uniform(5, width / 2), rng.uniform(5, height / 2)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            out[img_id].append(([x, y, w, h], float(rng.uniform(0.0, 0.6)),
                                int(rng.choice(cat_ids))))
    return out


def feed(evaluator: COCOEvaluator, coco: dict, detections: dict, scale: float,
         batch_size: int = 8) -> None:
    """Pass ``detections`` as model outputs on images resized by ``scale`` (xyxy there)."""
    cat_to_label = {c: lbl for lbl, c in evaluator.label_to_cat_id.items()}
    images = coco["images"]
    for start in range(0, len(images), batch_size):
        outputs, targets = [], []
        for img in images[start:start + batch_size]:
            h, w = img["height"], img["width"]
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            sy, sx = size[0] / h, size[1] / w
            dets = detections[img["id"]]
            boxes = torch.tensor([[x * sx, y * sy, (x + bw) * sx, (y + bh) * sy]
                                  for (x, y, bw, bh), _, _ in dets],
                                 dtype=torch.float32).reshape(-1, 4)
            outputs.append({"boxes": boxes,
                            "scores": torch.tensor([s for _, s, _ in dets]),
                            "labels": torch.tensor([cat_to_label[c] for _, _, c in dets],
                                                   dtype=torch.int64)})
            targets.append({"image_id": img["id"], "orig_size": torch.tensor([h, w]),
                            "size": torch.tensor(size)})
        evaluator.update(outputs, targets)


def pycocotools_reference(coco: dict, detections: dict, image_ids: list[int]
                          ) -> tuple[COCOeval, list[str]]:
    """pycocotools' COCOeval on the same detections (xywh, original pixels) and images, and
    the summary lines it prints."""
    results = [{"image_id": img_id, "category_id": cat, "bbox": bbox, "score": score}
               for img_id, dets in detections.items() for bbox, score, cat in dets]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(coco)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        ev.summarize()
    return ev, printed.getvalue().splitlines()


def per_class_reference(ev: COCOeval, coco: dict) -> dict[str, float]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    out = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        if (p > -1).any():
            out[names[cat_id]] = float(p[p > -1].mean())
    return out


def round_trip_float32(coco: dict, detections: dict, scale: float) -> dict:
    """The detections as the evaluator will see them after float32 boxes are scaled back."""
    out = {}
    for img in coco["images"]:
        h, w = img["height"], img["width"]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        sy, sx = size[0] / h, size[1] / w
        rows = []
        for (x, y, bw, bh), score, cat in detections[img["id"]]:
            xyxy = np.array([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy], np.float32)
            xyxy = xyxy.astype(np.float64) * [1 / sx, 1 / sy, 1 / sx, 1 / sy]
            rows.append(([xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]],
                         float(np.float32(score)), cat))
        out[img["id"]] = rows
    return out


def check_against_pycocotools(coco: dict, detections: dict, scale: float) -> None:
    label_to_cat, names = label_mapping(coco)
    evaluator = COCOEvaluator(coco, label_to_cat, names)
    feed(evaluator, coco, detections, scale)
    result = evaluator.evaluate()
    ev, lines = pycocotools_reference(coco, round_trip_float32(coco, detections, scale),
                                      sorted(img["id"] for img in coco["images"]))

    assert result.stats == pytest.approx(list(ev.stats), abs=1e-6)
    for name, value in zip(METRIC_NAMES, ev.stats[:6]):
        if value < 0:
            assert math.isnan(result.metrics[name])
        else:
            assert result.metrics[name] == pytest.approx(value, abs=1e-6), name
    reference = per_class_reference(ev, coco)
    assert result.per_class.keys() == reference.keys()
    for name in reference:
        assert result.per_class[name] == pytest.approx(reference[name], abs=1e-6), name
    assert result.summary_lines() == lines[:12]
    assert 0.0 < result.metrics["AP"] < 1.0  # a meaningful comparison, not all-or-nothing


# --------------------------------------------------------------------------- parity


def test_matches_pycocotools_on_coco128(coco128: Path) -> None:
    coco = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    check_against_pycocotools(coco, fake_detections(coco, seed=0), scale=0.5)


def test_matches_pycocotools_on_synthetic_json() -> None:
    coco = synthetic_json()
    for seed in range(3):
        check_against_pycocotools(coco, fake_detections(coco, seed, jitter=0.15), scale=0.8)


# --------------------------------------------------------------------------- behaviour


def perfect(coco: dict) -> dict:
    dets = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        dets[ann["image_id"]].append((list(ann["bbox"]), 0.9, ann["category_id"]))
    return dets


def evaluator_for(coco: dict) -> COCOEvaluator:
    return COCOEvaluator(coco, *label_mapping(coco))


def test_perfect_detections_at_any_input_scale() -> None:
    coco = synthetic_json()
    for scale in (0.37, 1.0, 2.5):
        evaluator = evaluator_for(coco)
        feed(evaluator, coco, perfect(coco), scale)
        result = evaluator.evaluate()
        assert result.metrics["AP"] == pytest.approx(1.0)
        assert result.per_class == pytest.approx({"dog": 1.0, "cat": 1.0, "emu": 1.0})
        assert result.num_images == 4 and result.num_detections == 8


def test_no_detections_at_all_is_zero_not_a_crash() -> None:
    coco = synthetic_json()
    evaluator = evaluator_for(coco)
    feed(evaluator, coco, {img["id"]: [] for img in coco["images"]}, 1.0)
    result = evaluator.evaluate()
    assert result.metrics["AP"] == 0.0 and result.metrics["AP50"] == 0.0
    assert result.per_class == {"dog": 0.0, "cat": 0.0, "emu": 0.0}
    assert result.metrics["APl"] == 0.0  # image 11 holds one large box
    assert len(result.summary_lines()) == 12
    assert result.summary_lines()[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95")
    assert result.num_detections == 0


def test_false_positives_on_an_image_without_objects_cost_precision() -> None:
    coco = synthetic_json()
    dets = perfect(coco)
    dets[13] = [([10, 10, 50, 50], 0.95, 7)]  # image 13 has no objects
    evaluator = evaluator_for(coco)
    feed(evaluator, coco, dets, 1.0)
    result = evaluator.evaluate()
    assert result.per_class["dog"] == pytest.approx(1.0)
    assert result.per_class["cat"] < 1.0
    assert result.metrics["AP"] < 1.0


def test_only_updated_images_count() -> None:
    coco = synthetic_json()
    evaluator = evaluator_for(coco)
    image_10 = {"images": [coco["images"][0]]}
    feed(evaluator, image_10, perfect(coco), 1.0)
    result = evaluator.evaluate()
    # image 10 holds cat and dog only: emu has no ground truth there and is omitted
    assert result.per_class == pytest.approx({"dog": 1.0, "cat": 1.0})
    assert result.metrics["AP"] == pytest.approx(1.0)
    assert result.num_images == 1
    # no large box in image 10: COCO reports -1 ("nothing to measure"), metrics say NaN
    assert result.stats[5] == -1.0 and math.isnan(result.metrics["APl"])
    assert result.summary_lines()[5].endswith("= -1.000")


def test_repeated_images_are_counted_once() -> None:
    """A distributed sampler pads with repeats; the second copy must not double the boxes."""
    coco = synthetic_json()
    evaluator = evaluator_for(coco)
    feed(evaluator, coco, perfect(coco), 1.0)
    feed(evaluator, coco, perfect(coco), 1.0)
    result = evaluator.evaluate()
    assert result.metrics["AP"] == pytest.approx(1.0) and result.num_detections == 8


def test_reset_starts_a_new_pass() -> None:
    coco = synthetic_json()
    evaluator = evaluator_for(coco)
    feed(evaluator, coco, {img["id"]: [] for img in coco["images"]}, 1.0)
    evaluator.reset()
    with pytest.raises(RuntimeError, match="nothing to evaluate"):
        evaluator.evaluate()
    feed(evaluator, coco, perfect(coco), 1.0)
    assert evaluator.evaluate().metrics["AP"] == pytest.approx(1.0)


def test_background_label_is_dropped_and_unknown_labels_raise() -> None:
    coco = synthetic_json()
    evaluator = evaluator_for(coco)
    target = {"image_id": 13, "orig_size": (120, 200), "size": (120, 200)}
    evaluator.update([{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
                       "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}], [target])
    assert evaluator.evaluate().num_detections == 0
    with pytest.raises(ValueError, match="predicted labels"):
        evaluator.update([{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
                           "scores": torch.tensor([0.9]), "labels": torch.tensor([4])}],
                         [dict(target, image_id=12)])


def test_unknown_image_id_and_bad_mapping_raise() -> None:
    coco = synthetic_json()
    evaluator = evaluator_for(coco)
    with pytest.raises(ValueError, match="image_id 99"):
        evaluator.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                           "labels": torch.zeros(0, dtype=torch.int64)}],
                         [{"image_id": 99, "orig_size": (1, 1), "size": (1, 1)}])
    with pytest.raises(ValueError, match="category ids"):
        COCOEvaluator(coco, {1: 7, 2: 42}, ["cat", "nope"])


def test_the_annotation_dict_is_not_modified() -> None:
    coco = synthetic_json()
    before = copy.deepcopy(coco)
    evaluator = evaluator_for(coco)
    feed(evaluator, coco, fake_detections(coco, seed=1), 1.0)
    evaluator.evaluate()
    assert coco == before


def test_hundreds_of_images_evaluate_quickly() -> None:
    """500 images x 100 detections: well under the time of one training epoch."""
    import time

    coco = synthetic_json()
    coco["images"] = [dict(img, id=i) for i in range(1, 501) for img in coco["images"][:1]]
    coco["annotations"] = [dict(a, id=i * 10 + k, image_id=i)
                           for i in range(1, 501)
                           for k, a in enumerate(synthetic_json()["annotations"][:3])]
    rng = np.random.default_rng(0)
    dets = {i: [([*rng.uniform(0, 100, 2), *rng.uniform(5, 90, 2)], float(rng.random()),
                 int(rng.choice([3, 7, 9]))) for _ in range(100)] for i in range(1, 501)}
    evaluator = evaluator_for(coco)
    start = time.perf_counter()
    feed(evaluator, coco, dets, 1.0, batch_size=16)
    result = evaluator.evaluate()
    assert result.num_detections == 50_000
    assert time.perf_counter() - start < 20.0
