"""Co-tuning's relationship: per-class averaging (hand-made cases, an empty class), the pass
over a loader with ground-truth RoIs, the all-reduce across ranks, and the run-dir JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from engine.models import build_model
from engine.models.relationship import (
    gt_source_probabilities,
    learn_relationship,
    relationship_from_sums,
    source_class_names,
    write_relationship_json,
)
from engine.protocol.rundir import RunDirectory
from tests.engine.cotuning_helpers import TARGET_KINDS, shapes_batch, tiny_cfg


def test_relationship_from_sums_by_hand() -> None:
    # class 1: two boxes, class 2: none, class 3: one box; 4 source classes
    sums = torch.tensor([[0.2 + 0.4, 0.1 + 0.3, 0.5 + 0.1, 0.1 + 0.1],
                         [0.0, 0.0, 0.0, 0.0],
                         [0.7, 0.1, 0.1, 0.05]], dtype=torch.float64)
    counts = torch.tensor([2, 0, 1])
    matrix = relationship_from_sums(sums, counts)
    assert matrix.dtype == torch.float32
    assert torch.allclose(matrix, torch.tensor([[0.3, 0.2, 0.3, 0.1],
                                                [0.25, 0.25, 0.25, 0.25],  # empty: uniform
                                                [0.7, 0.1, 0.1, 0.05]]))
    assert not matrix.isnan().any()


def test_learned_rows_are_the_per_class_means_of_the_gt_box_probabilities() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg(num_classes=4))  # 3 kinds drawn: class 4 has no example
    batches = [shapes_batch(range(0, 3)), shapes_batch(range(3, 6))]
    model.train()
    matrix = learn_relationship(model, batches, 4, "cpu")
    assert model.training  # put back in the mode it was in

    model.eval()
    probs, labels = zip(*(gt_source_probabilities(model, *batch) for batch in batches))
    probs, labels = torch.cat(probs), torch.cat(labels)
    assert probs.shape == (len(labels), 4)
    assert (probs.sum(1) < 1).all()  # the background column is dropped, rows not re-normalised
    for label in (1, 2, 3):
        assert torch.allclose(matrix[label - 1], probs[labels == label].mean(0), atol=1e-6)
    assert torch.equal(matrix[3], torch.full((4,), 0.25))
    heads = model.roi_heads
    assert heads.is_learned and torch.equal(heads.relationship, matrix)
    assert heads.relationship_counts.tolist() == [int((labels == c).sum()) for c in (1, 2, 3, 4)]
    assert heads.relationship_counts[3] == 0
    assert "roi_heads.relationship" in model.state_dict()


def test_known_source_head_gives_known_rows() -> None:
    """A source head that ignores the feature (zero weights, bias b) gives softmax(b) without
    the background for every box: every class with examples gets exactly that row."""
    model = build_model(tiny_cfg(num_classes=3, cot_classes=4))
    bias = torch.tensor([1.0, 2.0, 0.0, -1.0, 0.5])
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.zero_()
        model.roi_heads.box_predictor.cls_score.bias.copy_(bias)
    images, targets = shapes_batch(range(4), kinds=("ring", "star"))  # labels 1, 2 only
    matrix = learn_relationship(model, [(images, targets)], 3, "cpu")
    row = bias.softmax(0)[1:]
    assert torch.allclose(matrix[0], row) and torch.allclose(matrix[1], row)
    assert torch.equal(matrix[2], torch.full((4,), 0.25))


def test_gt_boxes_are_the_rois() -> None:
    # Moving a box changes its probabilities; the other boxes' stay the same.
    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    images, targets = shapes_batch(range(1))
    images, targets = images * 2, [targets[0], {k: v.clone() for k, v in targets[0].items()}]
    targets[1]["boxes"][0] = torch.tensor([0.0, 0.0, 30.0, 30.0])
    probs, labels = gt_source_probabilities(model, images, targets)
    n = len(targets[0]["labels"])
    assert torch.equal(labels, torch.cat([targets[0]["labels"]] * 2))
    assert not torch.allclose(probs[0], probs[n])
    assert torch.allclose(probs[1:n], probs[n + 1:], atol=1e-6)


def _rank_worker(rank: int, world: int, init_file: str, out: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        torch.manual_seed(0)  # the same model on every rank
        model = build_model(tiny_cfg(num_classes=4))
        ddp = DistributedDataParallel(model)  # as the trainer wraps it (no unused parameters)
        # each rank sees its own images (rank 1's include no class-3 box at all)
        batches = [shapes_batch(range(0, 3))] if rank == 0 else \
                  [shapes_batch(range(3, 5), kinds=("ellipse", "ring"))]
        learn_relationship(ddp, batches, 4, "cpu", distributed=True)
        # then a DDP training step: buffers broadcast, every parameter reached by a loss
        ddp.train()
        losses = ddp(*batches[0])
        sum(losses.values()).backward()
        heads = model.roi_heads
        torch.save({"relationship": heads.relationship, "counts": heads.relationship_counts,
                    "loss_cot": losses["loss_cot"].detach(),
                    "source_grad": heads.box_predictor.cls_score.weight.grad}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_distributed_sums_and_counts_over_all_ranks(tmp_path: Path) -> None:
    out = str(tmp_path / "rank")
    mp.start_processes(_rank_worker, args=(2, str(tmp_path / "init"), out), nprocs=2,
                       join=True, start_method="fork")
    per_rank = [torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1)]
    torch.manual_seed(0)
    single = build_model(tiny_cfg(num_classes=4))
    matrix = learn_relationship(single, [shapes_batch(range(0, 3)),
                                         shapes_batch(range(3, 5), kinds=("ellipse", "ring"))],
                                4, "cpu")
    for got in per_rank:  # every rank holds the relationship of the whole training set
        assert torch.allclose(got["relationship"], matrix, atol=1e-6)
        assert torch.equal(got["counts"], single.roi_heads.relationship_counts)
    assert per_rank[0]["counts"][3] == 0 and torch.equal(per_rank[0]["relationship"][3],
                                                         torch.full((4,), 0.25))
    # the DDP step: each rank its own loss, the same all-reduced gradient
    assert not torch.equal(per_rank[0]["loss_cot"], per_rank[1]["loss_cot"])
    assert torch.allclose(per_rank[0]["source_grad"], per_rank[1]["source_grad"])
    assert per_rank[0]["source_grad"].abs().sum() > 0


def test_labels_outside_the_target_classes_are_refused() -> None:
    model = build_model(tiny_cfg(num_classes=3))
    images, targets = shapes_batch(range(1))
    targets[0]["labels"] = torch.full_like(targets[0]["labels"], 4)
    with pytest.raises(ValueError, match="target labels must be 1..3"):
        learn_relationship(model, [(images, targets)], 3, "cpu")
    assert not model.roi_heads.is_learned


# --------------------------------------------------------------------------- names and JSON

def test_relationship_json_for_the_run_dir(tmp_path: Path) -> None:
    model = build_model(tiny_cfg(num_classes=3, cot_classes=4))
    matrix = torch.tensor([[0.5, 0.1, 0.3, 0.05], [0.25, 0.25, 0.25, 0.25], [0.0, 0.9, 0.0, 0.1]])
    model.roi_heads.set_relationship(matrix, torch.tensor([10, 0, 7]))
    path = write_relationship_json(tmp_path, model, list(TARGET_KINDS),
                                   ["circle", "square", "triangle", "cross"],
                                   source_names_from="checkpoint", top_k=2)
    assert path == RunDirectory(tmp_path).cot_relationship
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert data["target_classes"] == list(TARGET_KINDS)
    assert data["source_classes"] == ["circle", "square", "triangle", "cross"]
    assert data["source_names_from"] == "checkpoint"
    assert data["examples"] == {"ellipse": 10, "ring": 0, "diamond": 7}
    assert data["top"]["ellipse"] == [{"source": "circle", "p": 0.5},
                                      {"source": "triangle", "p": 0.3}]
    assert data["top"]["diamond"] == [{"source": "square", "p": 0.9},
                                      {"source": "cross", "p": 0.1}]
    assert torch.allclose(torch.tensor(data["matrix"]), matrix)
    assert not list(tmp_path.glob(".*tmp"))  # written atomically


def test_source_class_names(tmp_path: Path) -> None:
    torch.save({"model": {}, "class_names": ["circle", "square"]}, tmp_path / "ckpt.pt")
    assert source_class_names(tmp_path / "ckpt.pt", 2) == (["circle", "square"], "checkpoint")
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pt")
    names, origin = source_class_names(tmp_path / "plain.pt", 90)  # torchvision's COCO head
    assert origin == "coco" and len(names) == 90 and names[0] == "person"
    assert names.count("N/A") == 10
    names, origin = source_class_names(tmp_path / "plain.pt", 80)  # contiguous COCO classes
    assert origin == "coco" and len(names) == 80 and "N/A" not in names
    assert names[-1] == "toothbrush"
    # names of another length than the head are not used
    assert source_class_names(tmp_path / "ckpt.pt", 3) == (
        ["source 1", "source 2", "source 3"], "index")
