"""ONNX Runtime execution providers as the settings name them (``provider: cpu|cuda|tensorrt``).

One table for every model the package runs (detectors, line models), so that a setting means
the same provider chain everywhere: the requested provider first, then the ones ONNX Runtime
falls back to, CPU last.
"""

from __future__ import annotations

import enum


class Provider(enum.Enum):
    """The ``provider`` setting; the value is what YAML, ROS parameters and the CLI carry."""

    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"

    @property
    def ort_chain(self) -> tuple[str, ...]:
        """ONNX Runtime provider names, preferred first, ending with the CPU."""
        return _CHAINS[self]


_CHAINS = {
    Provider.CPU: ("CPUExecutionProvider",),
    Provider.CUDA: ("CUDAExecutionProvider", "CPUExecutionProvider"),
    Provider.TENSORRT: ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}

#: the ``choices`` of every ``provider`` setting
PROVIDER_CHOICES = tuple(p.value for p in Provider)
