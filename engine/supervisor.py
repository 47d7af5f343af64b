"""``python -m engine.supervisor``: relaunch a crashed engine from its last checkpoint.

    python -m engine.supervisor --run-dir DIR --max-restarts N -- ENGINE_ARGV...

The supervisor (stdlib only, no torch) starts the engine command as its child and waits.
When the engine crashes (exit code 1, or killed by a signal it did not ask for), it
relaunches it with ``--resume auto`` after a backoff (2, 4, 8 ... 60 s; ``--backoff`` sets
the first), keeping the same run id and appending to the same events and logs;
``run.json`` counts the attempts. It does not restart on a user error (exit 2), a graceful
stop (130) or success (0), nor on a deterministic crash: one that happens at the same
iteration twice in a row, nor after a full disk (run.json's ``error``; restarting cannot
help until someone frees space). The engine's own exit code is read from ``run.json`` (rank 0
writes it), so this holds under torchrun too, whose agent exits 1 whatever happened.

SIGINT/SIGTERM/SIGUSR1 sent to the supervisor are forwarded to the engine; after a stop
request nothing is restarted.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.protocol.errors import DiskFull, RunError
from engine.protocol.events import EventWriter, read_events
from engine.protocol.rundir import ACTIVE, RunDirectory, append_whole, open_run_file

NO_RESTART_CODES = {0: "finished", 2: "a user error", 130: "a graceful stop"}
MAX_BACKOFF_S = 60.0


class Supervisor:
    def __init__(self, run: RunDirectory, argv: list[str], max_restarts: int,
                 base_backoff: float = 2.0):
        self.run = run
        self.argv = argv
        self.max_restarts = max_restarts
        self.base_backoff = base_backoff
        self.child: subprocess.Popen | None = None
        self.stop_requested = False

    def _forward(self, signum: int, frame: object) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM):
            self.stop_requested = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def _log(self, message: str, level: str = "warning") -> None:
        """A note in the run's events and log, as far as they can be written (on a full
        disk they may not: the supervisor must still decide and exit cleanly)."""
        try:
            with EventWriter(self.run.events) as w:
                w.write("log", level=level, message=f"supervisor: {message}")
            with open_run_file(self.run.train_log, "ab", buffering=0) as f:
                line = time.strftime("%Y-%m-%d %H:%M:%S") + f" WARNING supervisor: {message}\n"
                append_whole(f, line.encode("utf-8"), self.run.train_log)
        except (DiskFull, OSError, RunError) as exc:
            print(f"supervisor: {message} (not recorded: {exc})", file=sys.stderr, flush=True)

    def _disk_full(self) -> bool:
        """Whether the attempt ended because the disk was full: restarting cannot help
        until someone frees space (then ``dettui resume`` goes on)."""
        try:
            error = self.run.read_meta().get("error")
        except RunError:
            return False
        return isinstance(error, dict) and error.get("type") == DiskFull.__name__

    def _crash_iter(self, since: float) -> int | None:
        """The iteration of the engine's last ``error`` event written after ``since``."""
        errors = [e for e in read_events(self.run.events)
                  if e.get("type") == "error" and e.get("t", 0) >= since]
        return errors[-1].get("iter") if errors else None

    def _resume_argv(self) -> list[str]:
        """The engine command resuming from this run's own newest checkpoint."""
        if not any(self.run.checkpoints.glob("*.pt")):
            return self.argv  # nothing saved yet: start over exactly as the first time
        argv = list(self.argv)
        if "--resume" in argv:
            argv[argv.index("--resume") + 1] = "auto"
        else:
            argv += ["--resume", "auto"]
        return argv

    def _engine_verdict(self, code: int) -> int:
        """The engine's own exit code for this attempt, as rank 0 wrote it in run.json.

        Under torchrun the child is the torchrun agent, which exits 1 whatever its workers
        said (a user error, a graceful stop); run.json keeps what the engine meant. A
        killed engine wrote nothing (its exit code was reset when it started): then the
        process's own code counts, and run.json is corrected to ``failed``."""
        try:
            meta = self.run.read_meta()
        except RunError:
            return code
        if meta.get("status") in ACTIVE:  # killed before it could say how it ended
            self.run.update_meta(status="failed", exit_code=code)
            return code
        engine_code = meta.get("exit_code")
        return engine_code if isinstance(engine_code, int) else code

    def run_forever(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._forward)
        restarts, last_crash_iter, argv = 0, None, self.argv
        while True:
            started = time.time()
            self.child = subprocess.Popen(argv)
            code = self._engine_verdict(self.child.wait())
            if code in NO_RESTART_CODES or self.stop_requested:
                return code
            how = (f"killed by {signal.Signals(-code).name}" if code < 0
                   else f"exit code {code}")
            crash_iter = self._crash_iter(started)
            if self._disk_full():
                self._log(f"engine {how}: the disk is full; not restarting (free some "
                          "space, then resume the run)")
                return code
            if restarts >= self.max_restarts:
                self._log(f"engine {how}; no restarts left ({self.max_restarts} used)")
                return code
            if crash_iter is not None and crash_iter == last_crash_iter:
                self._log(f"engine {how} at iteration {crash_iter} again: a deterministic "
                          "crash, not restarting")
                return code
            last_crash_iter = crash_iter
            restarts += 1
            delay = min(MAX_BACKOFF_S, self.base_backoff * 2 ** (restarts - 1))
            self._log(f"engine {how}; restart {restarts}/{self.max_restarts} from the last "
                      f"checkpoint in {delay:g}s")
            meta = self.run.read_meta()
            self.run.update_meta(status="starting", attempt=(meta.get("attempt") or 1) + 1,
                                 restarts=restarts, exit_code=None)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.stop_requested:
                time.sleep(min(0.2, delay))
            if self.stop_requested:
                self.run.update_meta(status="interrupted", exit_code=130)
                return 130
            argv = self._resume_argv()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.supervisor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--max-restarts", type=int, required=True)
    p.add_argument("--backoff", type=float, default=2.0, help="first backoff, seconds")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the engine command")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the engine command after --")
    sup = Supervisor(RunDirectory(args.run_dir), command, args.max_restarts, args.backoff)
    return sup.run_forever()


if __name__ == "__main__":
    sys.exit(main())
