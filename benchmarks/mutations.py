"""Plant known bugs in a copy of the repository and check that the trainer tests catch them.

    python benchmarks/mutations.py            # every mutation, then a caught/survived table
    python benchmarks/mutations.py --list     # the mutations and the tests each one runs
    python benchmarks/mutations.py --only teacher_ema_inverted dt_views_swapped

Each mutation is one or more exact text replacements in engine code, each of which must
match exactly once (a mutation that no longer applies is an error, not a pass). For each
one the working tree (git's tracked and untracked-not-ignored files, so uncommitted edits
count) is copied to a temporary folder, patched there, and the named tests run in the copy
with ``PYTHONPATH`` set to it. A mutation is **caught** when at least one named test fails.
First the same tests run on an unpatched copy: they must all pass, or the table would mean
nothing. On demand only (not part of the suite): a few minutes, each mutation a pytest run.
Exit code: 0 when every mutation is caught, 1 when one survives, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

VIEWS = "tests/engine/test_semi_views.py"
SCHEDULE = "tests/engine/test_semi_schedule.py"
EMA = "tests/engine/test_teacher_ema.py"
HOOKS = "tests/engine/test_trainer_hooks.py"
SEMI_BASE = "tests/engine/test_semi_base.py"
DT_LOSSES = "tests/engine/test_ssod_dense_teacher.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    patches: tuple[tuple[str, str, str], ...]   # (file, exact old text, new text)
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    # --------------------------------------------------------------------------- EMA
    # ModelEMA and Teacher share one kernel (ema_update_): inverting it, or handing it
    # 1 - d from either caller, gives t*(1-d) + s*d.
    Mutation("ema_kernel_inverted", "ema_update_ takes a*(1-d) + m*d (both averages)",
             (("engine/trainers/ema.py",
               "a.mul_(decay).add_(m.to(a.dtype), alpha=1 - decay)",
               "a.mul_(1 - decay).add_(m.to(a.dtype), alpha=decay)"),),
             (EMA, HOOKS)),
    Mutation("teacher_ema_inverted", "Teacher.update takes t*(1-d) + s*d",
             (("engine/trainers/teacher.py",
               "ema_update_(self.module, student, self.decay if decay is None else decay)",
               "ema_update_(self.module, student, 1 - (self.decay if decay is None else decay))"),),
             (EMA, SCHEDULE,
              "tests/engine/test_semi_trainers.py::"
              "test_denseteacher_teacher_copies_at_ema_start_then_follows_after_each_update",
              "tests/engine/test_arsl_trainer.py::"
              "test_teacher_copies_at_burn_up_then_follows_before_each_update",
              "tests/engine/test_semi_rtdetr.py::"
              "test_teacher_copies_then_follows_before_each_update")),
    Mutation("model_ema_inverted", "ModelEMA.update takes e*(1-d) + w*d",
             (("engine/trainers/ema.py",
               "ema_update_(self.module, model, self.current_decay())",
               "ema_update_(self.module, model, 1 - self.current_decay())"),),
             (EMA,)),
    # ------------------------------------------------------------------- views swapped
    Mutation("dt_views_swapped", "DenseTeacher: teacher on the strong views, student weak",
             (("engine/trainers/dense_teacher.py",
               "unsup_strong = self.to_device(*batch.unsup_strong)[0] if semi else None",
               "unsup_strong = self.to_device(*batch.unsup_weak)[0] if semi else None"),
              ("engine/trainers/dense_teacher.py",
               "self.to_device(*batch.unsup_weak)[0])",
               "self.to_device(*batch.unsup_strong)[0])")),
             (VIEWS,)),
    Mutation("arsl_views_swapped", "ARSL: teacher on the strong views, student weak",
             (("engine/trainers/arsl.py",
               "unsup_strong = self.to_device(*batch.unsup_strong)[0] if semi else None",
               "unsup_strong = self.to_device(*batch.unsup_weak)[0] if semi else None"),
              ("engine/trainers/arsl.py",
               "self.to_device(*batch.unsup_weak)[0])",
               "self.to_device(*batch.unsup_strong)[0])")),
             (VIEWS,)),
    Mutation("rtdetr_views_swapped", "Semi-RT-DETR: teacher labels the strong views",
             (("engine/trainers/semi_rtdetr.py",
               "pseudo = self.pseudo_labels(self.to_device(*batch.unsup_weak)[0])",
               "pseudo = self.pseudo_labels(self.to_device(*batch.unsup_strong)[0])"),
              ("engine/trainers/semi_rtdetr.py",
               "strong = self.to_device(*batch.unsup_strong)[0]",
               "strong = self.to_device(*batch.unsup_weak)[0]")),
             (VIEWS,)),
    # --------------------------------------------------------------------- DenseTeacher
    Mutation("dt_selection_by_student", "DenseTeacher ranks points by the student's scores",
             (("engine/ssod/dense_teacher.py",
               "sel = select_foreground(t_probs, ratio)",
               "sel = select_foreground(student.cls_logits.sigmoid(), ratio)"),),
             (DT_LOSSES,)),
    Mutation("dt_weights_cls_box_swapped", "DenseTeacher: cls and box loss weights swapped",
             (("engine/trainers/dense_teacher.py",
               '"distill_loss_cls": lw.distill_loss_cls,',
               '"distill_loss_cls": lw.distill_loss_box,'),
              ("engine/trainers/dense_teacher.py",
               '"distill_loss_box": lw.distill_loss_box,',
               '"distill_loss_box": lw.distill_loss_cls,')),
             (VIEWS,)),
    Mutation("dt_weights_box_quality_swapped",
             "DenseTeacher: box and quality loss weights swapped",
             (("engine/trainers/dense_teacher.py",
               '"distill_loss_box": lw.distill_loss_box,',
               '"distill_loss_box": lw.distill_loss_quality,'),
              ("engine/trainers/dense_teacher.py",
               '"distill_loss_quality": lw.distill_loss_quality}',
               '"distill_loss_quality": lw.distill_loss_box}')),
             (VIEWS,)),
    Mutation("dt_ramp_skipped", "DenseTeacher: unsup_weight without the suppress ramp",
             (("engine/trainers/dense_teacher.py",
               "weight = unsup_weight_at(it, self.semi_start, tc.unsup_weight, tc.suppress)",
               "weight = tc.unsup_weight if it > self.semi_start else 0.0"),),
             (VIEWS,)),
    Mutation("dt_ramp_too_slow", "DenseTeacher: the linear ramp over 2 x semi_start",
             (("engine/ssod/dense_teacher.py",
               "return weight * (iteration - start) / start",
               "return weight * (iteration - start) / (2 * start)"),),
             (DT_LOSSES, VIEWS)),
    Mutation("dt_unsup_weight_ignored",
             "unlabeled terms not multiplied by their weight (DenseTeacher's ramp)",
             (("engine/trainers/semi.py",
               "terms = {k: unsup[k] * weight for k in self.unsup_terms}",
               "terms = {k: unsup[k] for k in self.unsup_terms}"),),
             (VIEWS, SEMI_BASE)),
    Mutation("dt_waits_for_teacher_start",
             "DenseTeacher distils only once the teacher has started (before issue 22)",
             (("engine/trainers/dense_teacher.py",
               "semi = weight > 0",
               "weight = weight if self.teacher.started else 0.0\n        semi = weight > 0"),),
             (SCHEDULE,)),
    Mutation("dt_quality_iou_ignored", "DenseTeacher: quality: iou trains centerness",
             (("engine/ssod/dense_teacher.py",
               'if self.quality == "centerness":\n            return super().sup_loss(',
               'if True:\n            return super().sup_loss('),),
             (VIEWS,)),
    # ------------------------------------------------- what SemiTrainer holds once
    Mutation("arsl_teacher_decay_ignored", "ARSL's teacher follows with ema_decay",
             (("engine/trainers/arsl.py",
               "return self.cfg.SEMISUPNET.EMA_KEEP_RATE",
               "return self.cfg.ema_decay"),),
             (SEMI_BASE, "tests/engine/test_arsl_trainer.py::"
              "test_teacher_copies_at_burn_up_then_follows_before_each_update")),
    Mutation("rtdetr_teacher_decay_ignored", "Semi-RT-DETR's teacher follows with ema_decay",
             (("engine/trainers/semi_rtdetr.py",
               "return self.cfg.DETR_SSOD.train_cfg.ema_decay",
               "return self.cfg.ema_decay"),),
             (SEMI_BASE, "tests/engine/test_semi_rtdetr.py::"
              "test_teacher_copies_then_follows_before_each_update")),
    Mutation("inference_on_ignored", "test_cfg.inference_on: student still evaluates the "
             "teacher first",
             (("engine/trainers/semi.py",
               'if self.inference_on() == "student":',
               "if False:"),),
             (SEMI_BASE,)),
    # --------------------------------------------------------------- kept caught (before)
    Mutation("dt_selection_reversed", "DenseTeacher takes the least confident points",
             (("engine/ssod/dense_teacher.py",
               "top = scores.topk(k).indices",
               "top = scores.topk(k, largest=False).indices"),),
             (DT_LOSSES,)),
    Mutation("arsl_targets_from_student", "ARSL builds its pseudo targets from the student",
             (("engine/ssod/arsl.py",
               "targets = pseudo_targets(teacher, settings)",
               "targets = pseudo_targets(student, settings)"),),
             ("tests/engine/test_ssod_arsl.py",)),
    Mutation("rtdetr_threshold_ignored", "Semi-RT-DETR keeps every query as a pseudo-box",
             (("engine/trainers/semi_rtdetr.py",
               'keep = ((det["scores"] >= score_thr)',
               'keep = ((det["scores"] >= 0.0)'),),
             ("tests/engine/test_semi_rtdetr.py::"
              "test_pseudo_labels_are_kept_by_score_and_size_without_nms",)),
    Mutation("rtdetr_score_fn_ignored", "Semi-RT-DETR scores by sigmoid whatever score_fn",
             (("engine/trainers/semi_rtdetr.py",
               "detect_per_query(weak_images, tc.score_fn)",
               "detect_per_query(weak_images)"),),
             (VIEWS,)),
    Mutation("cot_background_rois", "co-tuning loss over background RoIs too",
             (("engine/models/cotuning.py",
               "foreground = labels > 0",
               "foreground = labels >= 0"),),
             ("tests/engine/test_cotuning.py::test_cotuning_loss_on_known_tensors",)),
    Mutation("lone_teacher_weights_silent",
             "only one of teacher/student weights is ignored without a word",
             (("engine/config/semi_weights.py",
               "    if bool(teacher) == bool(student):\n        return None",
               "    return None"),),
             ("tests/engine/test_semi_weights_warning.py",)),
)


class SetupError(Exception):
    pass


def working_tree_files(repo: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], cwd=repo, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def copy_tree(repo: Path, dest: Path) -> None:
    for rel in working_tree_files(repo):
        src = repo / rel
        if not src.is_file() or src.is_symlink():
            continue  # deleted in the working tree, or a link: nothing to copy
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def apply(copy: Path, mutation: Mutation) -> None:
    for rel, old, new in mutation.patches:
        path = copy / rel
        text = path.read_text()
        count = text.count(old)
        if count != 1:
            raise SetupError(f"{mutation.name}: {rel}: the text to replace occurs {count} "
                             f"times (must be exactly once): {old!r}")
        path.write_text(text.replace(old, new))


def run_tests(copy: Path, tests: tuple[str, ...], basetemp: Path) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
           "-rf", f"--basetemp={basetemp}", *tests]
    proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.MULTILINE)
    if proc.returncode not in (0, 1):  # collection error, usage error, internal error
        failed = failed or [f"pytest exit {proc.returncode}: {proc.stdout[-300:]}"]
    return proc.returncode, failed


def short(node: str) -> str:
    return node.replace("tests/engine/", "").split(" - ")[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    args = ap.parse_args(argv)
    chosen = list(MUTATIONS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            print(f"unknown mutation(s): {', '.join(unknown)}; see --list", file=sys.stderr)
            return 2
        chosen = [m for m in MUTATIONS if m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.what}\n    tests: {' '.join(m.tests)}")
        return 0

    with tempfile.TemporaryDirectory(prefix="dettui-mutations-") as tmp:
        root = Path(tmp)
        base = root / "base"
        copy_tree(REPO, base)
        all_tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        print(f"baseline: {len(all_tests)} test targets on an unpatched copy ...", flush=True)
        code, failed = run_tests(base, all_tests, root / "pytest-base")
        if code != 0:
            print("the named tests fail without any mutation; fix them first:\n  "
                  + "\n  ".join(failed), file=sys.stderr)
            return 2
        rows = []
        for m in chosen:
            copy = root / m.name
            shutil.copytree(base, copy)
            try:
                apply(copy, m)
            except SetupError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            code, failed = run_tests(copy, m.tests, root / f"pytest-{m.name}")
            verdict = "caught" if code != 0 else "SURVIVED"
            rows.append((m.name, verdict, ", ".join(short(f) for f in failed) or "-"))
            print(f"  {m.name}: {verdict}", flush=True)
            shutil.rmtree(copy, ignore_errors=True)

    print()
    print("| mutation | result | failing tests |")
    print("|---|---|---|")
    for name, verdict, tests in rows:
        print(f"| {name} | {verdict} | {tests} |")
    survived = [r for r in rows if r[1] != "caught"]
    print(f"\n{len(rows) - len(survived)} of {len(rows)} mutations caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
