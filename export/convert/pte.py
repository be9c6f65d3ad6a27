"""What a .pte file says about itself, read without ExecuTorch's compiler: `run` and the hook's
forward() in Python load a file in a process that never lowers one (the compiler's import is ~3 s)."""

from __future__ import annotations

import struct
from typing import Any

from export.errors import ExportError


def _deserialize(data: bytes) -> Any:
    from export.threads import without_compiler

    def read() -> Any:  # the flatbuffer classes import lazily: read inside too, not only import
        from executorch.exir._serialize._program import deserialize_pte_binary

        return deserialize_pte_binary(data)

    return without_compiler(read)


def delegate_ids(pte_bytes: bytes, name: str = "file") -> list[str]:
    """The backend id of each delegate call in the program, in plan order."""
    try:
        pte = _deserialize(pte_bytes)
    except (struct.error, ValueError, IndexError) as e:  # what a cut or corrupt flatbuffer raises
        raise ExportError(f"{name}: not a readable ExecuTorch program: truncated or corrupt ({e})") from None
    program = getattr(pte, "program", pte)
    return [d.id for plan in program.execution_plan for d in plan.delegates]
