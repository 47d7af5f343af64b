"""``dettui stop`` against run.json pids that would signal everything, in a sandbox.

Run as ``unshare --user --map-root-user --pid --fork --mount-proc python sandbox_stop.py
RUNS RUN_ID OUT PID_JSON...``: this process is pid 1 of a new PID namespace, so even
``kill(-1, SIGINT)`` reaches only what lives in here (a victim and this process), never the
machine. For each pid value it writes run.json, runs the real CLI and records the exit code,
the output and the signals that the victim and this process (pid 1) received, in
``OUT/<n>.json``.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

runs, run_id, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
values = [json.loads(v) for v in sys.argv[4:]]
own: list[int] = []
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
    signal.signal(sig, lambda signum, frame: own.append(signum))

here = Path(__file__).resolve().parent
record = out / "victim.signals"
victim = subprocess.Popen([sys.executable, str(here / "victim.py"), str(record)],
                          start_new_session=True)
while not Path(str(record) + ".ready").exists():
    time.sleep(0.02)
run_json = runs / run_id / "run.json"
for n, value in enumerate(values):
    meta = json.loads(run_json.read_text())
    meta["pid"] = value
    run_json.write_text(json.dumps(meta))
    own.clear()
    record.write_text("")
    cli = subprocess.run([sys.executable, "-m", "tui.cli", "stop", run_id, "--runs-dir",
                          str(runs)], capture_output=True, text=True, timeout=120)
    time.sleep(0.3)  # a signal sent is handled by now
    (out / f"{n}.json").write_text(json.dumps({
        "pid": value, "rc": cli.returncode, "output": cli.stdout + cli.stderr,
        "victim": record.read_text().split(), "init": list(own),
        "victim_alive": victim.poll() is None}))
os.killpg(victim.pid, signal.SIGKILL)
victim.wait()
