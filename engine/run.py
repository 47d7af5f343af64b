"""PaddleDetection's ``tools/train.py::run(FLAGS, cfg)``, in PyTorch (notes §1.3).

1. environment: join torch.distributed when torchrun started several processes;
2. ``enable_ce``: seed every RNG with 0 and use deterministic algorithms;
3. trainer dispatch: ``ssod_method`` > ``use_cot`` > the supervised ``Trainer`` (the trainer
   catalogue, ``engine.trainers.catalogue``);
4. weights: resume > teacher + student > ``pretrain_weights`` (first match only); a
   weights source (URL, ``torchvision:``, ``hf:``, ``run:``) is resolved to a local file
   first, downloaded once with progress events, and recorded in run.json;
5. ``trainer.train(validate)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist

from engine.config.schema import Config
from engine.config.semi_weights import semi_weights_warning
from engine.env import DistEnv, init_env, set_random_seed, teardown_env
from engine.memcheck import check_first_batch_fits
from engine.protocol.errors import RunError, UserError, WeightsError
from engine.protocol.rundir import RunDirectory, default_runs_dir, resolve_run
from engine.recorder import RunRecorder
from engine.trainers import build_trainer
from engine.trainers.base import Trainer
from engine.trainers.checkpoint import checkpoint_candidates, load_checkpoint


@dataclass
class Flags:
    """The command-line flags ``run`` reads (the seed's FLAGS)."""

    eval: bool = True
    resume: str | None = None  # a checkpoint path, a run id, or "auto" (this run's newest)
    force: bool = False        # resume even though the config changed
    run_dir: Path | None = None
    runs_dir: Path | None = None


def resume_candidates(ref: str, flags: Flags) -> list[Path]:
    """The checkpoints ``--resume REF`` may mean, best first."""
    if ref == "auto":
        if flags.run_dir is None:
            raise RunError("--resume auto needs the run's folder (--run-dir)")
        return checkpoint_candidates(RunDirectory(flags.run_dir).checkpoints)
    path = Path(ref).expanduser()
    if path.is_file() or path.suffix in (".pt", ".pth") or "/" in ref:
        return [path]
    run = resolve_run(flags.runs_dir or default_runs_dir(), ref)
    candidates = checkpoint_candidates(run.checkpoints)
    if not candidates:
        raise RunError(f"run {run.id} has no checkpoint to resume from")
    return candidates


def pick_checkpoint(ref: str, flags: Flags, trainer: Trainer) -> tuple[Path, dict] | None:
    """The first readable checkpoint ``--resume REF`` may mean, loaded; a corrupt one is
    reported and skipped (``auto`` falls back from ``last.pt`` to the older ones)."""
    candidates = resume_candidates(ref, flags)
    if not candidates:
        return None
    errors = []
    for path in candidates:
        try:
            return path, load_checkpoint(path)
        except WeightsError as exc:
            if len(candidates) == 1:
                raise
            errors.append(exc)
            trainer.recorder.note("warning", f"cannot resume from {path}: {exc.render()}; "
                                             "trying the previous checkpoint")
    raise WeightsError("no readable checkpoint to resume from: "
                       + "; ".join(e.render() for e in errors))


def resume(trainer: Trainer, flags: Flags) -> Path | None:
    """Restore the training state from the checkpoint ``--resume`` names.

    Rank 0 alone picks and reads the checkpoint and hands it to the other ranks: they need
    neither the run folder nor a filesystem shared with node 0, and cannot pick another
    file than rank 0 did (which would make the ranks run different numbers of steps)."""
    env = trainer.env
    picked: tuple[Path, dict] | None = None
    error: UserError | None = None
    if env.is_main:
        try:
            picked = pick_checkpoint(flags.resume, flags, trainer)
        except UserError as exc:
            error = exc
    if env.distributed:
        box: list[Any] = [(picked, error)]
        dist.broadcast_object_list(box, src=0)
        picked, error = box[0]
    if error is not None:
        raise error
    if picked is None:
        trainer.logger.info("--resume auto: no checkpoint yet, starting from scratch")
        return None
    path, state = picked
    trainer.restore(state, path, force=flags.force)
    return path


class DownloadEvents:
    """A download's progress as ``download`` events (at most two a second, and the last)
    and a train.log line at its start and end."""

    def __init__(self, recorder: RunRecorder, key: str, source: str, url: str | None,
                 path: Path):
        self.recorder, self.fields = recorder, {"key": key, "source": source, "url": url,
                                                "path": str(path)}
        self.last = 0.0
        self.started = False
        self.pending: tuple[int, int | None] | None = None  # not emitted yet (throttled)

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        self.pending = (done, total)
        if not self.started:
            self.started = True
            self.recorder.logger.info(f"downloading {self.fields['source']} from "
                                      f"{self.fields['url']} to {self.fields['path']}")
        if now - self.last >= 0.5 or (total is not None and done >= total):
            self.flush()

    def flush(self) -> None:
        """Emit the latest progress if it was held back (a download that stopped)."""
        if self.pending is not None:
            done, total = self.pending
            self.pending = None
            self.last = time.monotonic()
            self.recorder.emit("download", done=done, total=total, state="downloading",
                               **self.fields)

    def finish(self, size: int) -> None:
        self.recorder.emit("download", done=size, total=size, state="done", **self.fields)


def resolve_weights(cfg: Config, keys: tuple[str, ...], recorder: RunRecorder, env: DistEnv,
                    flags: Flags) -> dict[str, str]:
    """The local file of each weights source ``keys`` name, downloaded once (rank 0 first:
    the other ranks of this machine then find it in the cache) and recorded in run.json's
    ``weights.resolved`` (source, file, sha256)."""
    from engine.weightsource import plan, resolve

    files: dict[str, str] = {}
    records = []
    # ``run:`` ids are looked up beside this run (the launcher made it in the runs dir)
    runs_dir = flags.runs_dir or (flags.run_dir.parent if flags.run_dir else None)
    if env.distributed and not env.is_main:
        env.barrier()  # rank 0 downloads first
    for key in keys:
        source = getattr(cfg, key)
        where = plan(source, runs_dir=runs_dir, key=key)
        events = DownloadEvents(recorder, key, source, where.url, where.path)
        try:
            resolved = resolve(source, runs_dir=runs_dir, key=key, progress=events)
        finally:
            events.flush()  # where a failed download stopped
        if resolved.downloaded:
            events.finish(resolved.size)
        files[key] = str(resolved.path)
        records.append(resolved.record(key))
        if resolved.kind != "file":
            recorder.logger.info(f"{key}: {source} -> {resolved.path} "
                                 f"(sha256 {resolved.sha256[:16]}...)")
    if env.distributed and env.is_main:
        env.barrier()
    if recorder.active and records:
        meta = recorder.run.read_meta() if recorder.run.exists() else {}
        weights = meta.get("weights") if isinstance(meta.get("weights"), dict) else {}
        recorder.update_meta(weights={**weights, "resolved": records})
    return files


def run(flags: Flags, cfg: Config, recorder: RunRecorder, config_dict: dict[str, Any]) -> Trainer:
    # 1. environment; a first batch that cannot fit in the device's memory is refused now,
    # with the estimate, not met as an allocation of tens of GB at the first step
    env: DistEnv = init_env(cfg)
    check_first_batch_fits(cfg, env.device)

    # 2. continuous evaluation: the same numbers every time
    if cfg.enable_ce:
        seed = 0
        set_random_seed(0, deterministic=True)
    else:
        seed = cfg.seed
        set_random_seed(cfg.seed + env.rank)

    # 3. the trainer
    trainer = build_trainer(cfg, env, recorder, config_dict, seed=seed)

    # 4. weights, in priority order
    # (``--resume auto`` with no checkpoint yet is a fresh start: it gets the init weights,
    # e.g. a supervisor restart or a requeued SLURM job that died before its first one.)
    resumed_from = resume(trainer, flags) if flags.resume is not None else None
    if resumed_from is None:  # a resumed run never resolves (nor downloads) weights again
        lone = semi_weights_warning(cfg)
        if lone:
            recorder.note("warning", lone)
        if cfg.pretrain_teacher_weights and cfg.pretrain_student_weights:
            files = resolve_weights(cfg, ("pretrain_teacher_weights",
                                          "pretrain_student_weights"), recorder, env, flags)
            trainer.load_semi_weights(files["pretrain_teacher_weights"],
                                      files["pretrain_student_weights"])
        elif cfg.pretrain_weights:
            files = resolve_weights(cfg, ("pretrain_weights",), recorder, env, flags)
            trainer.load_weights(files["pretrain_weights"])

    recorder.emit("start", trainer=trainer.name, world_size=env.world_size,
                  device=str(env.device), resume_from=str(resumed_from) if resumed_from else None,
                  epochs=cfg.epoch, iters_per_epoch=trainer.iters_per_epoch,
                  max_iters=trainer.max_iters, num_params=trainer.num_params,
                  start_epoch=trainer.epoch, start_iter=trainer.iter,
                  train_images=len(trainer.train_ds), eval_images=len(trainer.eval_ds),
                  classes=trainer.train_ds.class_names, **trainer.start_event_fields())
    recorder.update_meta(device=str(env.device), world_size=env.world_size,
                         trainer=trainer.name, epochs=cfg.epoch, max_iters=trainer.max_iters)
    recorder.logger.info(
        f"{trainer.name}: {cfg.architecture}/{cfg.backbone.name}, "
        f"{trainer.num_params / 1e6:.2f}M parameters, device {env.device}, "
        f"world size {env.world_size}, {len(trainer.train_ds)} train / "
        f"{len(trainer.eval_ds)} eval images, {trainer.iters_per_epoch} iters/epoch x "
        f"{cfg.epoch} epochs")

    # 5. training. Then every rank waits for the others (rank 0 writes the last checkpoint)
    # and the process group is destroyed explicitly: a gloo group left to interpreter exit
    # can abort the process ("terminate called without an active exception").
    try:
        trainer.train(flags.eval)
        env.barrier()
    finally:
        teardown_env(env)
    return trainer
