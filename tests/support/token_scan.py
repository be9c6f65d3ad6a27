"""pytest plugin: the Hub token in no test's output. After each test, before pytest removes a passing
test's `tmp_path` (tmp_path_retention_policy = "failed"), the test's own folder and every text it
printed or read back with capsys/capfd are searched for the token the local Hub server accepts; a
hit fails that test at teardown. The session-end search (conftest.the_token_is_in_no_output) covers
what outlives a test: shared builds, module fixtures' folders, child processes' output."""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.capture import CaptureFixture

HF_TEST_TOKEN = "hf_TESTtoken_9f8e7d6c5b4a"
READ_BACK: list[str] = []  # what tests read with capsys / capfd, in this process

_readouterr = CaptureFixture.readouterr


def _recorded(self):  # type: ignore[no-untyped-def]
    result = _readouterr(self)
    READ_BACK.append(str(result.out) + str(result.err))
    return result


CaptureFixture.readouterr = _recorded  # type: ignore[method-assign]


def leaks_in(folder: Path, texts: list[str], token: str = HF_TEST_TOKEN) -> list[str]:
    found = [f"text read back #{i}" for i, t in enumerate(texts) if token in t]
    for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if p.is_file() and not p.is_symlink() and token.encode() in p.read_bytes():
            found.append(str(p))
    return found


@pytest.fixture(autouse=True)
def the_token_is_in_no_test_output(request, tmp_path: Path):
    """Runs its check before tmp_path's own teardown (fixtures end in reverse order of set-up)."""
    start = len(READ_BACK)
    yield
    sections = [text for *_, text in getattr(request.node, "_report_sections", [])]
    leaks = leaks_in(tmp_path, READ_BACK[start:] + sections)
    del READ_BACK[start:]
    assert not leaks, f"the Hub token leaked into: {leaks}"
