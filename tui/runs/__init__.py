"""Reading runs, for every front-end (no Textual, no torch).

- :mod:`tui.runs.index`: the runs folder as the home screen's table and ``dettui runs``;
- :mod:`tui.runs.runmodel`: one run's history and live state, for the monitor;
- :mod:`tui.runs.eventscan`, :mod:`tui.runs.eventindex`: parsing ``events.jsonl``, in
  parallel or through ``events.idx``; :mod:`tui.runs.filetail`: following appended files;
- :mod:`tui.runs.progress`, :mod:`tui.runs.semiinfo`: where a run stands and its semi
  phase, said the same way everywhere.
"""
