"""TUI speed: CLI start, home screen, opening a 1M-event run, and a live run at 2,000 ev/s.

    .venv/bin/python benchmarks/tui_bench.py            # everything, prints a table
    .venv/bin/python benchmarks/tui_bench.py --events 200000 --live-seconds 5   # quicker

Every TUI number is measured on a real terminal: the app runs as its own process on a
pseudo-terminal (like in tmux or over SSH), and the bench reads what it draws, so the times
include Python start-up, imports, layout and the bytes written to the terminal.

* open: spawn ``tui_bench.py --serve RUN`` (a bare app showing ``MonitorScreen(RUN)``) on a
  run whose events.jsonl holds N train events (plus eval and system events at realistic
  rates), written with ``engine.protocol.events.EventWriter`` (with the engine's
  ``events.idx``) once into ``$TMPDIR/dettui-bench/`` (about 330 MB + a 90 MB index for a
  million; delete it to regenerate). "shown" is the first frame with the header at the last
  iteration; "preview"
  the first frame with the sampled loss curves (only drawn for a run without the index);
  "every curve" the first frame whose loss plot says it holds all N iterations. The same run
  without ``events.idx`` (the JSON parser alone: the reader before the index, and still the
  one for runs written before it) is opened first, in the same bench run, for the old/new
  ratio. Times are taken when the reader thread sees the text arrive.
* compare: ``read_run_curves`` (the compare screen's reader, which is the monitor's
  ``RunModel``) on the same run, with and without the index, in a fresh process each.

Last measured on a quiet machine (2 CPUs, load average 0.7, nothing else running)::

    dettui --help                                    0.24 s
    home screen first paint                          1.16 s
    open 1,000,000 train events: monitor shown       1.01 s
      ... every curve drawn (events.idx)             1.72 s   (five more runs: 1.61-2.08 s,
                                                               median 1.77 s)
      ... the same run without events.idx            5.74 s   old/new 3.3x
    compare: read the curves of this run             1.39 s
      ... the same without events.idx                4.69 s   old/new 3.4x

  With the index, the history is read while the first picture is painted (its numpy work
  leaves the GIL free much of the time); reading it alone (``RunModel.load_history()``)
  takes about 0.45 s of the 1.7 s, the rest is Python, Textual and plotext starting (about
  0.9 s) and the first plot drawn (0.15 s).
* live: once loaded, a writer process appends 2,000 events/s (train events, a system event
  a second, two evals every 10 s, 100 train.log lines a second). The TUI's CPU use is
  psutil ``cpu_times`` of its process over the window, divided by the wall time. Key
  latency: press ``y`` (log-y on/off) and time until a frame shows the changed plot
  subtitle, 15 times.
* ``dettui --help``: ``python -m tui.cli --help`` in a fresh process, best of 5.
* home: ``dettui`` (no command) on a pty until its first frame shows the home footer.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import pty
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.protocol.events import EventWriter  # noqa: E402
from engine.protocol.rundir import RunDirectory  # noqa: E402

ANSI = re.compile(rb"\x1b\[[0-9;?<>=!]*[ -/]*[@-~]"  # CSI: cursor moves, colours
                  rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
                  rb"|\x1b[()][A-Z0-9]|\x1b[=>78]")
CACHE = Path(tempfile.gettempdir()) / "dettui-bench"
TERMS = ("loss_cls", "loss_box_reg", "loss_centerness")


# -- fixtures -------------------------------------------------------------------------------

def train_fields(i: int, max_iters: int) -> dict:
    """A train event as the engine writes it (full-precision floats, every field)."""
    decay = math.exp(-i / max(1, max_iters / 5))
    losses = {"loss_cls": 0.4 + 0.8 * decay + 0.05 * math.sin(i * 0.37),
              "loss_box_reg": 0.3 + 0.5 * decay + 0.04 * math.cos(i * 0.11),
              "loss_centerness": 0.58 + 0.02 * math.sin(i * 0.013)}
    return {"epoch": (i - 1) // 1000, "iter": i, "epoch_iter": (i - 1) % 1000 + 1,
            "iters_per_epoch": 1000, "max_iters": max_iters, "loss": sum(losses.values()),
            "losses": losses, "lr": 0.01 * (0.5 + 0.5 * math.cos(math.pi * i / max_iters)),
            "batch_time": 0.05 + 0.001 * (i % 7), "data_time": 0.004 + 0.0001 * (i % 5),
            "ips": 160.0 + (i % 13) * 0.731, "eta": (max_iters - i) * 0.05,
            "memory": 5123.4 + (i % 3)}


def system_fields(i: int) -> dict:
    return {"cpu_percent": 40 + 20 * math.sin(i / 500), "ram_used_mb": 20_000.0,
            "ram_total_mb": 64_000.0, "proc_rss_mb": 3_100.0 + i % 50,
            "gpus": [{"index": g, "name": "NVIDIA A100-SXM4-80GB", "util": 90.0 - g,
                      "mem_used_mb": 41_000.0, "mem_total_mb": 81_920.0,
                      "temperature": 66.0, "power_w": 310.0} for g in range(2)],
            "gpu_status": ""}


def eval_fields(i: int, model: str) -> dict:
    ap = 0.1 + 0.3 * (1 - math.exp(-i / 200_000)) + (0.01 if model == "teacher" else 0)
    return {"epoch": (i - 1) // 1000, "iter": i, "model": model,
            "metrics": {"AP": ap, "AP50": ap * 1.6, "AP75": ap * 0.9, "APs": ap / 2,
                        "APm": ap, "APl": ap * 1.2},
            "per_class": {f"class_{c}": ap * (0.8 + 0.01 * c) for c in range(20)}}


def write_history(run: RunDirectory, n: int) -> None:
    """``n`` train events, a system event every 40 and two evals every 5,000 iterations."""
    with EventWriter(run.events, index=run.events_index) as w:  # as the engine writes
        w.write("start", run_id=run.id, epochs=n // 1000, iters_per_epoch=1000,
                max_iters=n, start_epoch=0, start_iter=0)
        for i in range(1, n + 1):
            w.write("train", **train_fields(i, n))
            if i % 40 == 0:
                w.write("system", **system_fields(i))
            if i % 5000 == 0:
                for model in ("teacher", "student"):
                    w.write("eval", **eval_fields(i, model))
    run.train_log.write_text("".join(f"iter {i} loss 1.0\n" for i in range(0, n, 20)))
    run.stderr_log.write_text("")


def bench_run(n: int, root: Path, index: bool = True) -> RunDirectory:
    """A fresh run folder holding ``n`` train events (generated once, then copied), with
    the engine's ``events.idx`` unless ``index`` is False (a run written before it)."""
    cached = CACHE / f"events-{n}.jsonl"
    if not cached.exists() or not cached.with_suffix(".idx").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"generating {n:,} events once into {cached} ...", file=sys.stderr)
        tmp = RunDirectory.create(CACHE, run_id=f"gen-{os.getpid()}")
        write_history(tmp, n)
        tmp.events.replace(cached)
        tmp.events_index.replace(cached.with_suffix(".idx"))
        shutil.copy(tmp.train_log, cached.with_suffix(".log"))
        tmp.delete()
    run = RunDirectory.create(root, run_id=f"bench-{n}" + ("" if index else "-noidx"))
    shutil.copy(cached, run.events)
    if index:
        shutil.copy(cached.with_suffix(".idx"), run.events_index)
    shutil.copy(cached.with_suffix(".log"), run.train_log)
    run.stderr_log.write_text("")
    run.write_meta({"schema": 1, "id": run.id, "name": "bench", "trainer": "DenseTeacher",
                    "status": "running", "host": "bench-host", "pid": None,
                    "config_path": "configs/bench.yml"})
    return run


# -- a TUI on a pseudo-terminal ---------------------------------------------------------

class Terminal:
    """A process on a pty of a given size; a thread collects what it draws (text only)."""

    def __init__(self, argv: list[str], size: tuple[int, int] = (200, 60),
                 watch: tuple[str, ...] = ()) -> None:
        self.seen: dict[str, float] = {}
        """When each of ``watch`` was first drawn (``perf_counter``), as the reader saw it:
        waiting for one needle must not delay the time taken of another."""
        self._watch = watch
        master, slave = pty.openpty()
        cols, rows = size
        termios.tcsetwinsize(slave, (rows, cols))
        env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor",
                   PYTHONPATH=str(REPO))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=REPO, start_new_session=True)
        os.close(slave)
        self.master = master
        self._text = ""  # what was drawn, less the first ``_base`` characters
        self._base = 0
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                break
            if not data:
                break
            plain = ANSI.sub(b"", data).decode("utf-8", errors="replace")
            with self.changed:
                if len(self._text) > 1 << 20:  # nobody looks that far back
                    self._base += len(self._text) - (1 << 19)
                    self._text = self._text[-(1 << 19):]
                self._text += plain
                now = time.perf_counter()
                for needle in self._watch:
                    if needle not in self.seen and needle in self._text[-(len(plain) + 200):]:
                        self.seen[needle] = now
                self.changed.notify_all()

    def mark(self) -> int:
        """An offset in the drawn text: ``wait_for`` looks only at what comes after it."""
        with self.changed:
            return self._base + len(self._text)

    def wait_for(self, needle: str, since: int = 0, timeout: float = 60.0) -> float | None:
        """The ``perf_counter()`` when ``needle`` showed up after text offset ``since``
        (None on timeout or if the process ended)."""
        t0 = time.perf_counter()
        with self.changed:
            while self._text.find(needle, max(0, since - self._base)) < 0:
                left = timeout - (time.perf_counter() - t0)
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.changed.wait(left)
        return time.perf_counter()

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        os.close(self.master)


def serve(run_dir: Path) -> None:
    """The app the bench measures: nothing but the run monitor."""
    from textual.app import App

    from tui.screens.monitor import MonitorScreen

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(MonitorScreen(run_dir))

    Host().run()


def write_live(run_dir: Path, rate: int, seconds: float, first_iter: int) -> None:
    """Append ``rate`` events a second (train + system + eval) and train.log lines."""
    run = RunDirectory(run_dir)
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    started = time.monotonic()
    end = started + seconds
    i = first_iter
    written = 0
    next_tick = time.monotonic()
    with EventWriter(run.events) as w, open(run.train_log, "a") as log:
        while time.monotonic() < end:
            for _ in range(per_tick):
                i += 1
                written += 1
                w.write("train", **train_fields(i, first_iter + int(rate * seconds) + 10))
                if i % rate == 0:
                    w.write("system", **system_fields(i))
                if i % (10 * rate) == 0:
                    for model in ("teacher", "student"):
                        w.write("eval", **eval_fields(i, model))
                if i % 20 == 0:
                    log.write(f"iter {i} loss {1.0:.4f} lr 0.01\n")
                    log.flush()
            next_tick += tick
            time.sleep(max(0.0, next_tick - time.monotonic()))
    print(f"{written / (time.monotonic() - started):.0f}")  # train events per second


# -- measurements -----------------------------------------------------------------------------

def measure_help() -> tuple[str, str]:
    if not (REPO / "tui" / "cli").is_dir():
        return "not measured", "tui/cli/ does not exist yet"
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "tui.cli", "--help"], cwd=REPO,
                              capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            return "not measured", f"`python -m tui.cli --help` failed: {done.stderr[-200:]!r}"
    return (f"{min(times):.2f} s", "python -m tui.cli --help, best of 5 "
            f"(median {statistics.median(times):.2f} s)")


def measure_home(root: Path) -> tuple[str, str]:
    if not (REPO / "tui" / "app.py").exists() or not (REPO / "tui" / "cli").is_dir():
        return "not measured", "tui/app.py or tui/cli/ does not exist yet"
    runs = root / "home-runs"
    runs.mkdir()
    term = Terminal([sys.executable, "-m", "tui.cli", "--runs-dir", str(runs)], (120, 40))
    try:
        seen = term.wait_for("New run", timeout=20)
    finally:
        term.close()
    if seen is None:
        return "not measured", "the home screen never showed its footer ('New run')"
    return f"{seen - term.started:.2f} s", "spawn to the first frame with the home footer"


def measure_monitor(n: int, live_seconds: float, root: Path
                    ) -> list[tuple[str, str, str, str]]:
    import psutil

    run = bench_run(n, root)
    size_mb = run.events.stat().st_size / 2**20
    rows: list[tuple[str, str, str, str]] = []
    # The same history without the engine's events.idx: the JSON parser alone (the reader
    # before the index; still how runs written before it open), on the same machine, now.
    done = f"{n:,} iters"
    old = Terminal([sys.executable, str(Path(__file__).resolve()), "--serve",
                    str(bench_run(n, root, index=False).path)], watch=(done,))
    try:
        old.wait_for(done, timeout=600)
        old_complete = _since(old.started, old.seen.get(done))
    finally:
        old.close()
    needles = (f"iter {n:,}", "sampled preview", done)
    term = Terminal([sys.executable, str(Path(__file__).resolve()), "--serve", str(run.path)],
                    watch=needles)
    try:
        term.wait_for(done, timeout=120)
        shown, preview, complete = (term.seen.get(k) for k in needles)
        rows.append((f"open a run of {n:,} train events ({size_mb:.0f} MB): monitor shown",
                     _since(term.started, shown), "< 2 s",
                     "header at the last iteration, evals, system, logs"))
        rows.append(("  ... sampled preview of the loss curves drawn",
                     _since(term.started, preview) if preview else "skipped", "",
                     "256 windows of 16 KiB, only for a run without events.idx"))
        new_complete = _since(term.started, complete)
        rows.append(("  ... every curve drawn from all events", new_complete, "< 2 s",
                     "from events.idx (engine.protocol.eventindex), checked against events.jsonl"))
        rows.append(("  ... the same run without events.idx", old_complete, "",
                     f"the JSON parser on {min(8, os.cpu_count() or 1)} processes; "
                     f"old/new {_ratio(old_complete, new_complete)}"))
        rows += measure_compare_reader(run, n)
        if complete is None:
            return rows
        time.sleep(1.0)
        proc = psutil.Process(term.proc.pid)
        rows.append(("  ... memory of the TUI process once loaded",
                     f"{proc.memory_info().rss / 2**20:.0f} MB", "", "RSS"))
        writer = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--write",
                                   str(run.path), "--rate", "2000", "--seconds",
                                   str(live_seconds + 3), "--first-iter", str(n)], cwd=REPO,
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)  # let the stream start
        cpu0, t0 = proc.cpu_times(), time.perf_counter()
        latencies = []
        log_y = False
        deadline = t0 + live_seconds
        while time.perf_counter() < deadline - 0.5 and len(latencies) < 15:
            mark = term.mark()
            log_y = not log_y
            pressed = time.perf_counter()
            term.press("y")
            # The loss plot's subtitle ends "x: iter · log y" or "x: iter" + the border.
            needle = "x: iter · log y" if log_y else "x: iter ─"
            seen = term.wait_for(needle, mark, timeout=5)
            latencies.append(seen - pressed if seen is not None else 5.0)
            time.sleep(max(0.0, 0.5 - (time.perf_counter() - pressed)))
        time.sleep(max(0.0, deadline - time.perf_counter()))
        cpu1, t1 = proc.cpu_times(), time.perf_counter()
        rate = writer.communicate()[0].strip()
        busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        rows.append(("live, 2,000 events/s: TUI process CPU", f"{100 * busy / (t1 - t0):.1f} %",
                     "< 30 %", f"psutil cpu_times over {t1 - t0:.0f} s, one core = 100 %; "
                     f"the writer made {rate} train events/s"))
        lat = sorted(latencies)
        rows.append(("live: key press to redraw",
                     f"median {1000 * statistics.median(lat):.0f} ms", "< 100 ms",
                     f"{len(lat)} presses of y, max {1000 * lat[-1]:.0f} ms"))
    finally:
        term.close()
    return rows


def _since(start: float, seen: float | None) -> str:
    return "timed out" if seen is None else f"{seen - start:.2f} s"


def _ratio(old: str, new: str) -> str:
    try:
        return f"{float(old.split()[0]) / float(new.split()[0]):.1f}x"
    except ValueError:
        return "n/a"


def measure_compare_reader(run: RunDirectory, n: int) -> list[tuple[str, str, str, str]]:
    """The compare screen's reader (``read_run_curves``, the monitor's RunModel) on the
    same run, with and without its index, in a fresh process each (no warm caches)."""
    code = ("import sys, time; from pathlib import Path; t = time.perf_counter()\n"
            "from tui.screens.compare import read_run_curves\n"
            "c = read_run_curves(Path(sys.argv[1])); assert len(c.loss['loss'][0]) == "
            f"{n}\nprint(time.perf_counter() - t)")
    times = {}
    for label, path in (("with", run.path), ("without", run.path.parent / "bench-noidx")):
        if label == "without":
            copy = RunDirectory.create(run.path.parent, run_id="bench-noidx")
            os.link(run.events, copy.events)
            shutil.copy(run.run_json, copy.run_json)
        done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO,
                              capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
        times[label] = (f"{float(done.stdout):.2f} s" if done.returncode == 0
                        else "failed: " + done.stderr.strip()[-200:])
    return [("compare screen: read the curves of this run", times["with"], "",
             "read_run_curves (the monitor's reader), imports included"),
            ("  ... the same without events.idx", times["without"], "",
             f"old/new {_ratio(times['without'], times['with'])}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, default=2000, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--first-iter", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.write:
        write_live(args.write, args.rate, args.seconds, args.first_iter)
        return
    root = Path(tempfile.mkdtemp(prefix="dettui-bench-"))
    try:
        load = os.getloadavg()
        help_time, help_note = measure_help()
        rows = [("dettui --help", help_time, "< 0.3 s", help_note)]
        home, home_note = measure_home(root)
        rows.append(("home screen first paint", home, "< 1 s", home_note))
        rows += measure_monitor(args.events, args.live_seconds, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    after = os.getloadavg()
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"\nTUI benchmark · Python {platform.python_version()} · {os.cpu_count()} CPUs · "
          f"load average {load[0]:.2f} before, {after[0]:.2f} after (other processes "
          "share these CPUs)")
    header = ("measure", "result", "target", "how")
    for name, value, target, note in [header, *rows]:
        print(f"{name.ljust(widths[0])}  {value.rjust(widths[1])}  {target.ljust(widths[2])}"
              f"  {note}")
    print(f"\nreproduce: .venv/bin/python benchmarks/tui_bench.py --events {args.events} "
          f"--live-seconds {args.live_seconds:g}")


if __name__ == "__main__":
    main()
