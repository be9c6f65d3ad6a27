"""The build after `load` (export/sources/): one model config in, verified .pte files out, stage by
stage (`stages.STAGES` names them in order). `request` answers `rne-export build`, `pipeline` runs
the stages: `wrap` puts the app's contract around the model and `feeds` makes, once, every input
the later stages feed (parity, calibration, accuracy photos), `rewrite`, `quantize` and `lower` make
the program, `verify` and `bundle` check the file read back; `macs` counts the program's
multiply-accumulates, `pte` reads a file's delegates without the compiler. Submodules import torch; this
package face imports nothing."""

__all__ = [
    "request",
    "pipeline",
    "stages",
    "wrap",
    "feeds",
    "rewrite",
    "quantize",
    "lower",
    "verify",
    "bundle",
    "sensitivity",
    "voc",
    "macs",
    "pte",
]
