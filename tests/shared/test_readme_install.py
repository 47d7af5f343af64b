"""Issue 19.14: the README's install says what the default PyTorch wheels bring (CUDA, on a
machine without a GPU too) and gives the CPU-only install from PyTorch's CPU wheel index,
while its first two commands (demo, test suite) stay exactly as they were."""

from __future__ import annotations

import re

from tests.conftest import REPO

DEMO = ("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/dettui run "
        "configs/demo/fcos_tiny_shapes.yml --headless")
TESTS = ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && "
         ".venv/bin/python -m pytest -q -n 2")
CPU = ("python3 -m venv .venv && .venv/bin/pip install torch torchvision --index-url "
       "https://download.pytorch.org/whl/cpu && .venv/bin/pip install -e .")


def test_install_commands_and_the_cpu_only_alternative() -> None:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
    assert blocks[:3] == [DEMO, TESTS, CPU], blocks[:3]
    cpu_part = text[text.index("**No NVIDIA GPU?**"):text.index(CPU) + 600]
    assert "6.0 GB" in cpu_part and "3.2 GB are the `nvidia-*`" in cpu_part
    assert "not measured" in cpu_part  # the CPU venv's size is an estimate, said so
