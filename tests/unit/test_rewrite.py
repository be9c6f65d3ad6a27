"""Step 4a (export.convert.rewrite): convolutions that mostly read padding lose those taps, exactly."""

from __future__ import annotations

import json

import pytest
import torch
from support import TINY
from torch import nn

from export.config_file import load_config
from export.convert import pipeline, rewrite
from export.errors import GateError


class Dilated(nn.Module):
    """DeepLab's ASPP in small: dilated 3x3 convolutions on an 8x8 map, rates 1 to 9."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.branches = nn.ModuleList(nn.Conv2d(8, 4, 3, padding=d, dilation=d, bias=d % 2 == 0) for d in (1, 3, 6, 9))

    def forward(self, x):
        f = self.stem(x)
        return torch.cat([b(f) for b in self.branches], 1)


def conv(d: int) -> nn.Conv2d:
    """A "same"-padded 3x3 convolution at dilation d."""
    return nn.Conv2d(1, 1, 3, padding=d, dilation=d)


def test_useful_share_counts_the_taps_inside_the_map():
    assert rewrite.useful_share(conv(9), 8, 8) == pytest.approx(1 / 9)  # only the centre tap is inside
    assert rewrite.useful_share(conv(1), 8, 8) == pytest.approx((3 * 8 - 2) ** 2 / (9 * 64))
    assert rewrite.useful_share(conv(6), 8, 8) == pytest.approx((8 + 2 * 2) ** 2 / (9 * 64))


def test_the_bound_sits_between_a_measured_gain_and_the_backbone():
    """ASPP's rate 12 on the 520x520 file's 65x65 map (77 % useful) ran faster trimmed; DeepLab's
    and FCN's rate-4 backbone convolutions on 28x28 (82 %) are left whole."""
    assert rewrite.useful_share(conv(12), 65, 65) <= rewrite.MAX_USEFUL_SHARE < rewrite.useful_share(conv(4), 28, 28)


def test_trimmed_model_matches_the_original_and_leaves_it_alone():
    model, x = Dilated().eval(), torch.rand(1, 3, 32, 32)
    trimmed, names = rewrite.trim_padded_taps(model, x)
    assert names == ["branches.1", "branches.2", "branches.3"]  # rates 3-9 on 8x8 use <= 56 %; rate 1: 84 %
    assert all(isinstance(m, nn.Conv2d) for m in model.branches)  # the parity reference is untouched
    assert isinstance(trimmed.get_submodule("branches.3"), rewrite.TrimmedConv)
    assert len(trimmed.get_submodule("branches.3").bands) == 1
    with torch.no_grad():
        torch.testing.assert_close(trimmed(x), model(x), rtol=0, atol=1e-5)


def test_trimmed_convolution_lowers_whole_to_xnnpack():
    """Each tap's weight is its own constant: a run-time slice of stacked weights would leave the
    convolution to portable kernels (measured: 15 s instead of 0.2 s for DeepLab)."""
    from executorch.runtime import Runtime

    from export.config import Variant
    from export.convert.lower import delegation_of, export_program, lower, to_bytes

    model, x = Dilated().eval(), torch.rand(1, 3, 32, 32)
    trimmed, _ = rewrite.trim_padded_taps(model, x)
    edge = lower(export_program(trimmed, x), Variant(backend="xnnpack", precision="fp32"), "test")
    d = delegation_of(edge)
    assert d.non_delegated_compute_nodes == 0, d.non_delegated_ops
    program = to_bytes(edge)  # kept alive while the runtime reads it
    method = Runtime.get().load_program(program).load_method("forward")
    with torch.no_grad():
        torch.testing.assert_close(method.execute([x])[0], model(x), rtol=0, atol=1e-5)


def _tiny_fp32(tmp_path, monkeypatch):
    """The tiny net's stride-1 3x3 convolution counts as mostly padding (bound raised to 0.99)."""
    monkeypatch.setattr(rewrite, "MAX_USEFUL_SHARE", 0.99)
    return pipeline.build(load_config(TINY), ["xnnpack_fp32"], "random", tmp_path)


def test_build_records_the_rewrite_and_parity_holds_against_the_original(tmp_path, monkeypatch):
    _tiny_fp32(tmp_path, monkeypatch)
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["tiny_segnet_xnnpack_fp32.pte"]
    assert entry["graph_rewrites"] == ["model.backbone.3"]
    assert entry["parity"]["mode"] == "executed"


def test_int8_is_quantized_from_the_trimmed_graph_and_gated_against_the_original(tmp_path, monkeypatch):
    monkeypatch.setattr(rewrite, "MAX_USEFUL_SHARE", 0.99)
    pipeline.build(load_config(TINY), ["xnnpack_int8"], "random", tmp_path)
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["tiny_segnet_xnnpack_int8.pte"]
    assert entry["graph_rewrites"] == ["model.backbone.3"]
    # the trimmed graph counts the taps inside the map, as the stock graph does (test_macs's hand count)
    assert entry["macs"]["conv"] == 16 * 3 * 47 * 47 + 32 * 16 * 46 * 46 + 21 * 16 * 16 * 32
    assert entry["accuracy"] is not None and entry["parity"]["mode"] == "executed"


def test_parity_gate_fails_a_wrong_rewrite(tmp_path, monkeypatch):
    """A rewrite that drops a tap which reads inside the map changes the logits: the file no longer
    matches the original module, and the build fails at the parity gate."""
    init = rewrite.TrimmedConv.__init__

    def drop_last_tap(self, conv, h, w):
        init(self, conv, h, w)
        self.bands.pop()

    monkeypatch.setattr(rewrite.TrimmedConv, "__init__", drop_last_tap)
    with pytest.raises(GateError, match="parity"):
        _tiny_fp32(tmp_path, monkeypatch)
    assert not (tmp_path / "tiny_segnet_xnnpack_fp32.pte").exists()
