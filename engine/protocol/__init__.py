"""The run-folder protocol: the one contract between the engine and every front-end.

The engine writes a run folder, the front-ends (``tui/``) read it and start, stop or resume
its engine process; nothing else passes between them. Everything here is torch-free (stdlib,
psutil imported on use) and imported by both sides:

- :mod:`~engine.protocol.rundir`: the run folder's layout, atomic and append-only writes
  that never go through a symbolic link, run ids, ``resolve_run``, run times.
- :mod:`~engine.protocol.runmeta`: ``run.json``, checked as it is read.
- :mod:`~engine.protocol.events`: the event types of ``events.jsonl``, their constructors,
  the writer and the tailing reader.
- :mod:`~engine.protocol.eventindex`: the ``events.idx`` format (its writer here; the
  front-end's reader, :mod:`tui.runs.eventindex`, uses the same constants).
- :mod:`~engine.protocol.runlock`: ``engine.lock`` (one engine per run) and ``launch.lock``.
- :mod:`~engine.protocol.ownership`: whether a run's engine pid is alive and really its own.
- :mod:`~engine.protocol.errors`: the user errors (``RunError``, ``ConfigError``,
  ``DataError``, ``DiskFull``) shown as clear messages with exit code 2.
- :mod:`~engine.protocol.safefiles`: regular-file-only readers and writers.
- :mod:`~engine.protocol.termtext`: text from files made safe for a terminal.

``tests/shared/test_boundary.py`` holds ``tui/`` to this package plus a named list of
torch-free helpers.
"""
