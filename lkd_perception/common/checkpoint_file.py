"""Reading PyTorch checkpoint files the product or a user wrote, without running code from them.

A ``.pt`` file is a pickle; unpickled freely it can run any code. Every checkpoint is read here
with ``weights_only=True`` (tensors, numbers, strings, lists, dicts only), and every way a file
can be wrong becomes one :class:`ModelError` naming it: missing, empty, corrupt, or refused
because it asks to import something.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from lkd_perception.common.errors import ModelError


def load_checkpoint_file(path: str | Path, what: str = "checkpoint") -> Any:
    """The object saved in ``path`` by ``torch.save``, read as plain data on the CPU."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{what} not found: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"unsupported GLOBAL (\S+)", str(exc))
        if blocked:
            raise ModelError(f"{p}: refused, it would import {blocked.group(1)}; a {what} holds only "
                             "tensors and plain data") from exc
        raise ModelError(f"{p}: not a PyTorch {what} (corrupt or another format)") from exc
    except Exception as exc:  # torch's unpickler raises EOFError, RuntimeError, IndexError, ... on junk
        raise ModelError(f"{p}: not a PyTorch {what} (empty, truncated or another format)") from exc
