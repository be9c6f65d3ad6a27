"""`rne-export new --torchvision` then `build --config NAME` with no edit: every default variant of
the written config passes every gate, RNE 0.10's own schema check included."""

from __future__ import annotations

from support import new

from export import cli


def test_torchvision_new_then_build_by_name_every_variant_and_gate(here, capsys):
    """`new` then `build --config NAME` (found in ./configs) with no edit: every default variant passes
    every gate, the RNE 0.10 schema check included. (SMP and transformers: tests/slow/test_sources_slow.py
    builds the configs `new` writes; python: tests/e2e/test_installed.py.)"""
    import json

    assert new(capsys, "--torchvision", "lraspp_mobilenet_v3_large", "--size", "64")[0] == 0
    code = cli.main(["build", "--config", "lraspp_mobilenet_v3_large", "--weights", "random", "--out", "arts"])
    assert code == 0, capsys.readouterr().err[-2000:]
    entries = json.loads((here / "arts" / "manifest.json").read_text())["artifacts"]
    assert sorted(entries) == [
        f"lraspp_mobilenet_v3_large_{v}.pte" for v in ("coreml_fp16", "xnnpack_fp32", "xnnpack_int8")
    ]
    assert all(e["rne_schema"]["passed"] for e in entries.values())
