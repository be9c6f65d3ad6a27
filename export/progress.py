"""Progress lines for long steps: a start line and an end line with the seconds (what CI logs
get); on a terminal the start line counts the seconds while the step runs. No torch."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Timer:
    label: str
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        """One line when the stage starts and one with its seconds (kept under `name`) when it ends
        (CI logs); on a terminal the start line counts the seconds while the stage runs."""
        head = f"[{self.label}] {name} ({detail})" if detail else f"[{self.label}] {name}"
        print(f"{head} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        done = threading.Event()
        ticker = None
        if _is_terminal(sys.stderr):
            ticker = threading.Thread(target=_tick, args=(head, start, done), daemon=True)
            ticker.start()
        try:
            yield
        finally:
            done.set()
            if ticker is not None:
                ticker.join()
            self.seconds[name] = round(time.perf_counter() - start, 3)
            over = UP_AND_CLEAR if ticker is not None else ""  # a terminal: the start line becomes the result
            print(f"{over}{head} {self.seconds[name]:.1f} s", file=sys.stderr, flush=True)


UP_AND_CLEAR = "\r\x1b[1A\x1b[2K"  # back to the line above, cleared (VT100: every terminal emulator)


def _is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def _tick(head: str, start: float, done: threading.Event) -> None:
    """Rewrites the stage's start line with its elapsed seconds, every second, until it ends."""
    while not done.wait(1.0):
        print(f"{UP_AND_CLEAR}{head} ... {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(label: str, name: str) -> Iterator[None]:
    """One timed step outside an export (compat's side venv, ...): `[label] name ...`, then seconds."""
    with Timer(label).stage(name):
        yield
