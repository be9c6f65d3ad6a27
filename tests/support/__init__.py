"""What the tests share, built from the package's own records: paths (`paths`), the CLI run as a
user runs it (`cli`), builds and checkpoints made once per run (`builds`), manifest and
published.json records (`records`), checks several test files make (`checks`), the TypeScript
checker (`typescript`), and the local Hugging Face Hub server (`hub_server`)."""

from support.builds import (
    NEW_MODELS,
    SMALL,
    THREE_CHANNELS,
    WEIGHT_KINDS,
    made_once,
    realistic_checkpoint,
    segformer_folder,
    source_config,
    write_yaml,
)
from support.cli import OUTPUTS, core_ml_runs, foreign_stderr_lines, new, one_error_line, run_cli, token_leaks
from support.hub_server import hf_env
from support.paths import DATA, DEEPLAB, PERSON, ROOT, TINY
from support.records import BASE, change_manifest, published, published_file, published_record, sample_entry, typed
from support.token_scan import HF_TEST_TOKEN

__all__ = [
    "BASE", "SMALL", "THREE_CHANNELS", "DATA", "DEEPLAB", "HF_TEST_TOKEN", "PERSON", "change_manifest", "hf_env", "new", "one_error_line", "NEW_MODELS", "OUTPUTS", "ROOT", "TINY", "WEIGHT_KINDS",
    "core_ml_runs", "foreign_stderr_lines", "made_once", "published", "published_file", "published_record",
    "realistic_checkpoint", "run_cli", "sample_entry", "segformer_folder", "source_config", "token_leaks",
    "typed", "write_yaml",
]  # fmt: skip
