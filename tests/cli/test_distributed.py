"""Several processes and several nodes through torchrun, on CPU with gloo (issue 4.6).

``dettui run --nproc 2`` (torchrun --standalone) trains, evaluates, checkpoints, and only
rank 0 writes the run directory; Ctrl-C stops it with a checkpoint and ``dettui resume``
continues it; two torchrun "nodes" on localhost make one run; ``fleet: true`` takes the
rendezvous from the flags or the environment and is refused without one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import DEMO_CONFIG, REPO, semi_overrides
from tests.engine.test_rtdetr import TINY as TINY_RTDETR
from tests.faults.procs import (
    as_opts,
    dettui_cmd,
    events,
    free_port,
    last_iter,
    overrides,
    proc_env,
    wait_iter,
)

RUN_FILES = {"run.json", "config.yaml", "events.jsonl", "events.idx", "train.log",
             "stderr.log", "checkpoints", "previews", "engine.lock"}


def dettui(*args: str, env: dict | None = None, timeout: float = 240
           ) -> subprocess.CompletedProcess:
    return subprocess.run(dettui_cmd(*args), cwd=REPO, env=env or proc_env(),
                          capture_output=True, text=True, timeout=timeout)


def only_run(runs: Path) -> Path:
    dirs = [p for p in runs.iterdir() if p.is_dir()]
    assert len(dirs) == 1, f"expected one run directory, found {dirs}"
    return dirs[0]


def test_two_processes_train_evaluate_and_only_rank0_writes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    out = dettui("run", str(DEMO_CONFIG), "--headless", "--nproc", "2", "--runs-dir", str(runs),
                 *as_opts(overrides(tmp_path / "data", epochs=2, epoch_iter=6,
                                    extra=("LearningRate.warmup_iters=0",))))
    run = only_run(runs)
    assert out.returncode == 0, out.stdout[-2000:] + (run / "stderr.log").read_text()[-3000:]
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished" and meta["world_size"] == 2
    assert events(run, "start")[0]["world_size"] == 2
    assert {p.name for p in run.iterdir()} == RUN_FILES
    # Rank 1 logs to stderr only (stderr.log); train.log and events come from rank 0 alone.
    assert "[rank 1]" not in (run / "train.log").read_text()
    assert "[rank 1]" in (run / "stderr.log").read_text()
    assert len(events(run, "start")) == 1
    assert [e["iter"] for e in events(run, "train")] == list(range(1, 13))
    losses = [e["loss"] for e in events(run, "train")]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.9 * first, f"loss did not decrease: {losses}"
    evals = events(run, "eval")
    assert len(evals) == 2 and 0.0 <= evals[-1]["metrics"]["AP"] <= 1.0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iter"] == 12 and state["sampler"]["world_size"] == 2


def test_ctrl_c_under_torchrun_checkpoints_and_resume_finishes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cmd = dettui_cmd("run", str(DEMO_CONFIG), "--headless", "--nproc", "2", "--no-eval",
                     "--runs-dir", str(runs),
                     *as_opts(overrides(tmp_path / "data", epochs=2, epoch_iter=15)))
    cli = subprocess.Popen(cmd, cwd=REPO, env=proc_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not runs.is_dir() or not any(runs.iterdir()):
        assert time.monotonic() < deadline and cli.poll() is None
        time.sleep(0.05)
    run = only_run(runs)
    wait_iter(run, 3, cli)
    torchrun_pid = json.loads((run / "run.json").read_text())["pid"]
    t0 = time.monotonic()
    cli.send_signal(signal.SIGINT)  # Ctrl-C: the console passes SIGINT to torchrun
    output = cli.communicate(timeout=90)[0]
    latency = time.monotonic() - t0
    print(f"Ctrl-C under torchrun (2 ranks): exit {cli.returncode} after {latency:.2f}s")
    assert cli.returncode == 130, output[-3000:]
    assert latency < 30
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["pid"] == torchrun_pid
    assert events(run, "status")[-1]["message"] == "stopped by a signal after a checkpoint"
    stopped_at = load_checkpoint(run / "checkpoints" / "last.pt")["iter"]
    assert stopped_at == last_iter(run) < 30
    assert "Received 2 death signal" in (run / "stderr.log").read_text()  # torchrun's SIGINT

    out = dettui("resume", run.name, "--headless", "--runs-dir", str(runs))
    assert out.returncode == 0, out.stdout[-2000:] + (run / "stderr.log").read_text()[-3000:]
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished" and meta["attempt"] == 2
    start = events(run, "start")[-1]
    assert start["world_size"] == 2 and start["start_iter"] == stopped_at
    assert start["resume_from"].endswith("last.pt")
    assert last_iter(run) == 30 and load_checkpoint(run / "checkpoints" / "last.pt")["iter"] == 30


def test_two_nodes_on_localhost_make_one_run(tmp_path: Path) -> None:
    """Node 0 takes the rendezvous from flags, node 1 from the environment (fleet: true)."""
    runs, port = tmp_path / "runs", free_port()
    opts = as_opts(overrides(tmp_path / "data", epochs=1, epoch_iter=4,
                             extra=("fleet=true",)))
    node1 = subprocess.Popen(
        dettui_cmd("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(runs), *opts),
        cwd=REPO, env=proc_env(NNODES="2", NODE_RANK="1", MASTER_ADDR="127.0.0.1",
                               MASTER_PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node0 = dettui("run", str(DEMO_CONFIG), "--headless", "--nnodes", "2", "--node-rank", "0",
                   "--master-addr", "127.0.0.1", "--master-port", str(port),
                   "--runs-dir", str(runs), *opts)
    node1_out = node1.communicate(timeout=120)[0]
    run = only_run(runs)  # node 1 made no run directory of its own
    assert node0.returncode == 0, node0.stdout[-2000:] + (run / "stderr.log").read_text()
    assert node1.returncode == 0, node1_out[-3000:]
    assert "joining the multi-node job as a worker node" in node1_out
    assert "[rank 1]" in node1_out and "training finished" in node1_out
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished" and meta["world_size"] == 2
    assert events(run, "start")[0]["world_size"] == 2
    assert "--nnodes=2" in meta["command"] and "--node-rank=0" in meta["command"]
    assert events(run, "eval") and last_iter(run) == 4


def test_fleet_without_rendezvous_is_refused(tmp_path: Path) -> None:
    env = proc_env()
    for var in ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    out = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(tmp_path / "runs"),
                 "-o", "fleet=true", env=env, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "key 'fleet'" in out.stderr and "--master-addr" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_rendezvous_from_flags_or_environment() -> None:
    from engine.config import load_and_validate
    from engine.protocol.errors import ConfigError
    from tui.process.launcher import engine_argv
    from tui.process.spec import LaunchSpec, resolve_rendezvous

    _, fleet = load_and_validate(DEMO_CONFIG, ["fleet=true"])
    _, plain = load_and_validate(DEMO_CONFIG, [])
    env = {"NNODES": "3", "NODE_RANK": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400"}
    spec = resolve_rendezvous(LaunchSpec(config=DEMO_CONFIG, nproc=4), fleet, env)
    assert (spec.nnodes, spec.node_rank, spec.master_addr, spec.master_port) == \
        (3, 2, "10.0.0.1", 29400)
    argv = engine_argv(None, spec)
    assert argv[1:4] == ["-m", "torch.distributed.run", "--nproc-per-node=4"]
    assert {"--nnodes=3", "--node-rank=2", "--master-addr=10.0.0.1",
            "--master-port=29400"} <= set(argv) and "--run-dir" not in argv
    # Flags win over the environment; without fleet the environment is ignored.
    flagged = LaunchSpec(config=DEMO_CONFIG, nnodes=2, node_rank=1, master_addr="h0")
    assert resolve_rendezvous(flagged, fleet, env).master_addr == "h0"
    assert resolve_rendezvous(flagged, fleet, env).master_port == 29400
    assert resolve_rendezvous(LaunchSpec(config=DEMO_CONFIG), plain, env).nnodes == 1
    with pytest.raises(ConfigError, match="fleet"):
        resolve_rendezvous(LaunchSpec(config=DEMO_CONFIG), fleet, {})
    with pytest.raises(ConfigError, match="master-addr"):
        resolve_rendezvous(LaunchSpec(config=DEMO_CONFIG, nnodes=2), plain, {})
    with pytest.raises(ConfigError, match="node-rank"):
        resolve_rendezvous(LaunchSpec(config=DEMO_CONFIG, nnodes=2, node_rank=2,
                                      master_addr="h0"), plain, {})
    with pytest.raises(ConfigError, match="max-restarts"):
        resolve_rendezvous(LaunchSpec(config=DEMO_CONFIG, nnodes=2, master_addr="h0",
                                      max_restarts=1), plain, {})


def test_two_processes_run_semi_supervised_steps(tmp_path: Path) -> None:
    """DenseTeacher under torchrun: one DDP forward (labeled + unlabeled images) and one
    backward per step on each rank; the teacher follows the synchronised student."""
    runs = tmp_path / "runs"
    config = REPO / "configs" / "semi_det" / "denseteacher" / "denseteacher_fcos_tiny_shapes.yml"
    out = dettui("run", str(config), "--headless", "--nproc", "2", "--runs-dir", str(runs),
                 *as_opts(semi_overrides(tmp_path / "data", epochs=1, epoch_iter=4,
                                         semi_start=1, ema_start=0)), timeout=400)
    run = only_run(runs)
    assert out.returncode == 0, out.stdout[-2000:] + (run / "stderr.log").read_text()[-3000:]
    trains = events(run, "train")
    assert [e["iter"] for e in trains] == [1, 2, 3, 4]
    assert trains[-1]["phase"] == "semi" and trains[-1]["losses"]["distill_loss_cls"] > 0
    assert [e["model"] for e in events(run, "eval")] == ["teacher", "student"]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["sampler"]["world_size"] == 2 and state["teacher"]["updates"] == 3


def test_two_processes_run_arsl_steps(tmp_path: Path) -> None:
    """ARSL under torchrun: the supervised MILC loss and the student's unlabeled outputs
    from one DDP forward; the teacher is copied at the burn-up step and then follows."""
    runs = tmp_path / "runs"
    config = REPO / "configs" / "semi_det" / "arsl" / "arsl_fcos_tiny_shapes.yml"
    out = dettui("run", str(config), "--headless", "--nproc", "2", "--runs-dir", str(runs),
                 *as_opts([*semi_overrides(tmp_path / "data", epochs=1, epoch_iter=4),
                           "SEMISUPNET.BURN_UP_STEP=1", "SEMISUPNET.PSEUDO_WARM_UP_STEPS=1"]),
                 timeout=400)
    run = only_run(runs)
    assert out.returncode == 0, out.stdout[-2000:] + (run / "stderr.log").read_text()[-3000:]
    trains = events(run, "train")
    assert [e["phase"] for e in trains] == ["burn_in", "semi", "semi", "semi"]
    assert trains[-1]["losses"]["loss_cls_pseudo"] > 0
    assert trains[-1]["stats"]["pseudo_pos_per_image"] >= 1
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["teacher"]["started_at"] == 1 and state["teacher"]["updates"] == 2


def test_two_processes_run_semi_rtdetr_steps(tmp_path: Path) -> None:
    """Semi_RTDETR under torchrun: the supervised and the pseudo-label passes of the student
    in one DDP forward (the detector used twice), one backward; the teacher is copied at
    ema_start_iters and then follows. Threshold 0: every query of the tiny random teacher is
    a pseudo-box, so the scored loss really runs on both ranks."""
    runs = tmp_path / "runs"
    config = REPO / "configs" / "semi_det" / "semi_rtdetr" / "semi_rtdetr_tiny_shapes.yml"
    tiny = [f"rtdetr.{k}={json.dumps(v)}" for k, v in TINY_RTDETR.items()]
    out = dettui("run", str(config), "--headless", "--nproc", "2", "--runs-dir", str(runs),
                 *as_opts([*semi_overrides(tmp_path / "data", epochs=1, epoch_iter=3), *tiny,
                           "ema_start_iters=1",
                           "DETR_SSOD.train_cfg.pseudo_label_initial_score_thr=0.0"]),
                 timeout=400)
    run = only_run(runs)
    assert out.returncode == 0, out.stdout[-2000:] + (run / "stderr.log").read_text()[-3000:]
    trains = events(run, "train")
    assert [e["phase"] for e in trains] == ["burn_in", "semi", "semi"]
    assert trains[-1]["losses"]["loss_vfl_pseudo"] > 0
    assert trains[-1]["stats"]["pseudo_boxes_per_image"] == TINY_RTDETR["num_queries"]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["teacher"]["started_at"] == 1 and state["teacher"]["updates"] == 1
