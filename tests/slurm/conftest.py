"""A real single-node SLURM cluster (``tests/slurm/cluster.sh``), started once per test run.

The script installs Debian's slurm-wlm packages with apt-get when they are absent (as root),
so CI on a fresh machine runs these tests; where that is impossible (not root, no apt-get,
no network) or the daemons do not start, the tests skip and say why (as they do with
``DETTUI_NO_SLURM=1``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CLUSTER_SH = Path(__file__).resolve().parent / "cluster.sh"


@dataclass(frozen=True)
class Cluster:
    folder: Path
    conf: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with ``SLURM_CONF`` set, for
        sbatch, squeue, scancel, scontrol and everything that calls them."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, *argv: str, check: bool = True) -> str:
        out = subprocess.run(list(argv), env=self.env(), capture_output=True, text=True,
                             timeout=60)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: exit {out.returncode}: {out.stderr}")
        return out.stdout


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.environ.get("DETTUI_NO_SLURM"):
        pytest.skip("DETTUI_NO_SLURM is set: no SLURM cluster is started")
    folder = tmp_path_factory.mktemp("slurm")
    try:
        out = subprocess.run(["bash", str(CLUSTER_SH), "start", str(folder)],
                             capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", str(CLUSTER_SH), "stop", str(folder)], capture_output=True,
                       timeout=120)
        pytest.skip("a SLURM cluster could not be started: tests/slurm/cluster.sh start "
                    "took over 10 minutes")
    if out.returncode != 0:
        why = out.stderr.strip().splitlines()[-12:]
        pytest.skip("no SLURM cluster on this machine (tests/slurm/cluster.sh start exited "
                    f"{out.returncode}): " + " | ".join(why))
    try:
        yield Cluster(folder, folder / "slurm.conf")
    finally:
        stop = subprocess.run(["bash", str(CLUSTER_SH), "stop", str(folder)],
                              capture_output=True, text=True, timeout=180)
        # Nothing may be left running: the script kills and reports what did not stop.
        assert stop.returncode == 0, f"cluster.sh stop: {stop.stderr}"
