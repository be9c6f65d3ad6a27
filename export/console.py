"""The terminal a command writes to: unless --verbose, other libraries' warnings and log records
are dropped and the ExecuTorch runtime's native log lines go to a log file, so what the user sees
is this tool's own lines (progress, verdicts, errors). A bug's traceback goes to a file too."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from export.data import cache_root

# Where a command's native (C++) log lines and other libraries' warnings go unless --verbose: the
# ExecuTorch runtime prints cpuinfo probing lines on every XNNPACK load, which are not the user's business.
LOG_DIR = cache_root() / "logs"


# ExecuTorch's runtime logs through Python's sys.stderr (its pybindings), in its C++ format:
# "[cpuinfo_utils.cpp:71] Reading file ..." on the first XNNPACK run of a process
NATIVE_LINE = re.compile(r"^\[[\w./-]+\.(?:cpp|cc|c|h|hpp|mm):\d+\] ")


class Sieve(io.TextIOBase):
    """sys.stderr for a quiet command: the tool's own lines pass to the terminal; the runtime's
    native log lines go to a log file (opened on the first one)."""

    def __init__(self, terminal, log: Path) -> None:
        self.terminal, self.log_path, self.tail = terminal, log, ""
        self.log: io.TextIOBase | None = None

    def writable(self) -> bool:
        return True

    # what libraries ask of sys.stderr (a terminal? its fd? its encoding?) is the terminal's answer
    def isatty(self) -> bool:
        return bool(getattr(self.terminal, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self.terminal.fileno()

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self.terminal, "encoding", "utf-8")

    def write(self, text: str) -> int:
        *lines, self.tail = (self.tail + text).split("\n")
        for line in lines:
            self._route(line + "\n")
        return len(text)

    def flush(self) -> None:
        # a progress line ("\r  labels: 3/12") shows now; the runtime writes its lines in pieces
        # ("[", "cpuinfo_utils.cpp", ":71] ", ...) with a flush after each: a "[" start waits for its end
        if self.tail and not self.tail.startswith("["):
            self.terminal.write(self.tail)
            self.tail = ""
        self.terminal.flush()

    def _route(self, line: str) -> None:
        if not NATIVE_LINE.match(line):
            self.terminal.write(line)
            return
        if self.log is None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self.log = open(self.log_path, "a")  # closed when the command ends (close_log)
            except OSError:  # no writable cache: the line stays on the terminal rather than failing the command
                self.terminal.write(line)
                return
        self.log.write(line)

    def close_log(self) -> None:
        if self.tail:
            self._route(self.tail)
            self.tail = ""
        if self.log is not None:
            self.log.close()


@contextlib.contextmanager
def for_the_tool(command: str, verbose: bool) -> Iterator[None]:
    """Unless --verbose: other libraries' Python warnings and log records (torch's, ExecuTorch's,
    coremltools') are dropped, coremltools' progress bars are off, and the ExecuTorch runtime's own
    log lines go to LOG_DIR/<command>.log. Errors, gate verdicts and stage progress stay."""
    if verbose:
        yield
        return
    import warnings

    tqdm_was = os.environ.get("TQDM_DISABLE")
    # coremltools' per-pass progress bars: our stage lines time the lowering; huggingface_hub's upload
    # bars stay for a publish on a terminal
    if command != "publish" or not sys.stderr.isatty():
        os.environ["TQDM_DISABLE"] = "1"
    import cv2  # OpenCV's own decoder warnings ("[ WARN:0@1.2] global grfmt_png.cpp ..."): our error says it

    cv_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    terminal = sys.stderr
    sieve = Sieve(terminal, LOG_DIR / f"{command}.log")
    sys.stderr = sieve
    logging.disable(logging.WARNING)  # this tool logs nothing; ERROR records of others still show
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"export(\.|$)")
            yield
    finally:
        logging.disable(logging.NOTSET)
        cv2.utils.logging.setLogLevel(cv_level)
        sieve.flush()
        sieve.close_log()
        if sys.stderr is sieve:
            sys.stderr = terminal
        if tqdm_was is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm_was


def write_traceback() -> str:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="rne-export-traceback-", suffix=".txt")
    with open(fd, "w") as f:
        f.write(traceback.format_exc())
    return path
