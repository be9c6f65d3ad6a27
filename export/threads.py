"""How many compute threads this tool's processes use: every core by default, or RNE_EXPORT_THREADS
(a runner shared with other jobs; the test suite gives each of its workers its share of the cores).
torch and numpy's BLAS, ExecuTorch's threadpool and ONNX Runtime (bench) all take that count: a
thread pool that spins on cores another process needs slows both (two DeepLab builds side by side
on 2 cores: 121 s at one thread each against 195 s for the same two in turn at two threads)."""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from export.errors import ExportError

if TYPE_CHECKING:
    from executorch.runtime import Runtime

T = TypeVar("T")

ENV = "RNE_EXPORT_THREADS"


def limit() -> int | None:
    """RNE_EXPORT_THREADS as a count, None when unset (every core)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ExportError(
            f"{ENV}={raw!r} is not a thread count: set a whole number >= 1, or unset it to use every core"
        )
    return int(raw)


def share(ways: int) -> int:
    """Each of `ways` processes' share of this process's cores, at least one (side-by-side builds, the
    test workers)."""
    return max(1, len(os.sched_getaffinity(0)) // ways)


def apply() -> int | None:
    """The limit for torch and BLAS: through OMP_NUM_THREADS, which they read when they start (so this
    runs before torch is imported), and torch's own setting when it already is."""
    n = limit()
    if n is not None:
        os.environ["OMP_NUM_THREADS"] = str(n)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
    return n


def _bindings() -> types.ModuleType:
    """ExecuTorch's runtime bindings without its compiler: they import one warning class from
    `executorch.exir._warnings` (~4 s of each bench child that only loads and runs a file)."""
    import importlib

    return without_compiler(lambda: importlib.import_module("executorch.extension.pybindings.portable_lib"))


def without_compiler(load: Callable[[], T]) -> T:
    """`load()` inside compiler_free(); an ExecuTorch whose modules need more of the compiler than
    the placeholder gives them gets `load()` again with the plain import."""
    try:
        with compiler_free():
            return load()
    except (ImportError, AttributeError):  # what a module finding the placeholder's package empty raises
        return load()


@contextlib.contextmanager
def compiler_free() -> Iterator[None]:
    """Inside, a module of `executorch.exir` loads without running the package's `__init__` (all of
    torch.export and every pass, ~3-4 s): a placeholder package stands in, and every exir module
    loaded inside is dropped on the way out, so a later compiler import gets the whole package. In a
    process that already has the compiler, nothing changes."""
    if "executorch.exir" in sys.modules:
        yield
        return
    import executorch

    placeholder = types.ModuleType("executorch.exir")
    placeholder.__path__ = [os.path.join(p, "exir") for p in executorch.__path__]
    sys.modules["executorch.exir"] = placeholder
    try:
        yield
    finally:
        for loaded in [m for m in sys.modules if m == "executorch.exir" or m.startswith("executorch.exir.")]:
            del sys.modules[loaded]


def executorch_threads() -> int:
    """ExecuTorch's threadpool sized to the limit (at the first call, before any method runs: later
    calls find it sized); its thread count."""
    bindings = _bindings()
    n = limit()
    if n is not None and bindings._threadpool_get_thread_count() != n:
        bindings._unsafe_reset_threadpool(n)
    return bindings._threadpool_get_thread_count()


def runtime() -> Runtime:
    """ExecuTorch's runtime, its threadpool sized first: every file this tool runs goes through here."""
    executorch_threads()  # first: it imports the bindings without the compiler
    from executorch.runtime import Runtime

    return Runtime.get()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside: what int8 calibration observes and the outputs a .bpte stores must
    not depend on how many threads split each convolution (DeepLabV3's int8 .pte and its .bpte
    differed between 1 and 2 threads)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
