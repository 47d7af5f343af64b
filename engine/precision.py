"""Mixed precision (``amp``) needs a CUDA device: what everyone says when it has none.

stdlib only: the engine says it when it trains (train.log and the console, through a
``log`` event), the launch form before the run starts; same words in both.
"""

from __future__ import annotations


def amp_ignored(device: str) -> str:
    """The warning for ``amp: true`` (``--amp``) on a device that is not CUDA."""
    return (f"amp (--amp) is ignored: mixed precision needs a CUDA device, and this run "
            f"trains on {device}, in full precision (float32)")


def amp_ignored_before_start(amp: bool, device: str, cuda_devices: int | None) -> str | None:
    """The same warning before the run starts, when it can be told: ``device`` is the
    config's (``auto``, ``cpu``, ``cuda:N``), ``cuda_devices`` what NVML counts (None: it
    can't tell; the engine says it then)."""
    if not amp:
        return None
    if device == "cpu" or (device == "auto" and cuda_devices == 0):
        return amp_ignored("cpu")
    return None
