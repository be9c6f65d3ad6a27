"""The build: one model config in, verified .pte files out, stage by stage (`stages.STAGES` names
them in order). `pipeline` runs them; `sources` and `weights` load the model, `wrap` puts the app's
contract around it, `rewrite`, `quantize` and `lower` make the program, `verify` and `bundle` check
the file read back; `macs` counts the program's multiply-accumulates. Submodules import torch; this
package face imports nothing, so `import export.convert.sources` stays light."""

__all__ = [
    "pipeline",
    "stages",
    "sources",
    "weights",
    "models",
    "wrap",
    "rewrite",
    "quantize",
    "lower",
    "verify",
    "bundle",
    "sensitivity",
    "voc",
    "macs",
]
