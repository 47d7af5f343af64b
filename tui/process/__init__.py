"""Starting, stopping and resuming engine processes (no torch).

- :mod:`tui.process.launcher`: launch, resume, stop; the launch lock; ownership checks;
- :mod:`tui.process.slurm`: ``dettui run --slurm`` (an sbatch script, submit, ``scancel``).
"""
