"""A process that records every signal it receives: ``python victim.py OUT [ARG...]``.

The stop tests point a run.json at it and prove it received nothing. Its extra arguments
only shape its command line (``--run-dir RUN`` makes it look like that run's engine, for
the positive control). It writes ``OUT.ready`` once its handlers are in place and exits
by itself after two minutes, whatever happens to the test.
"""

import signal
import sys
import time

OUT = sys.argv[1]


def record(signum: int, frame: object) -> None:
    with open(OUT, "a", encoding="ascii") as f:
        f.write(f"{signum}\n")


for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP,
            signal.SIGQUIT):
    signal.signal(sig, record)
open(OUT + ".ready", "w").close()
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.05)
