"""The quantize stage's convert skips torchao's search for QAT conv-bn patterns when no BatchNorm
has the shape they need (export.convert.quantize._no_qat_pattern_search): the graph must come out
exactly as the stock search leaves it, and a graph shaped as QAT leaves it must still get the search."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torchao.quantization.pt2e import qat_utils
from torchao.quantization.pt2e.quantize_pt2e import (
    _convert_to_reference_decomposed_fx,
    prepare_pt2e,
)
from torchao.quantization.pt2e.utils import _is_bn_node

from export.config import QuantizationRecipe, Variant
from export.convert import quantize as Q

# what torchao's _fold_conv_bn_qat feeds its conv2d patterns: x, conv weight, BN weight, bias, mean, var
CONV2D_PATTERN_INPUTS = (
    torch.randn(1, 1, 3, 3),
    torch.randn(1, 1, 1, 1),
    torch.randn(1),
    torch.randn(1),
    torch.randn(1),
    torch.randn(1),
)


class ReluThenBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 2, 1)
        self.side = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.bn(torch.relu(self.conv(x)))  # BN after the ReLU: prepare cannot fold it into the conv
        return self.head(y) + self.side(y)  # one dequantize, two users: the fold's own steps have work


def _prepared(model: nn.Module) -> torch.fx.GraphModule:
    x = torch.rand(1, 3, 8, 8)
    program = torch.export.export(model.eval(), (x,), strict=False)
    prepared = prepare_pt2e(program.module(), Q.quantizer_for(QuantizationRecipe()))
    with torch.no_grad():
        prepared(x)
    return prepared


def test_without_the_search_the_graph_comes_out_as_the_stock_search_leaves_it(monkeypatch):
    prepared = _convert_to_reference_decomposed_fx(_prepared(ReluThenBN()))  # what convert_pt2e folds
    assert any(_is_bn_node(n) for n in prepared.graph.nodes)  # so torchao does search (~27 exports here)
    assert not Q._qat_shaped(prepared)
    x = next(n for n in prepared.graph.nodes if n.op == "placeholder")
    with prepared.graph.inserting_after(x):  # a dead node: the fold's own steps remove it
        prepared.graph.call_function(torch.ops.aten.relu.default, (x,))
    stock = qat_utils._fold_conv_bn_qat_helper(copy.deepcopy(prepared), F.conv2d, CONV2D_PATTERN_INPUTS, False)
    with Q._no_qat_pattern_search():
        ours = qat_utils._fold_conv_bn_qat_helper(copy.deepcopy(prepared), F.conv2d, CONV2D_PATTERN_INPUTS, False)
    assert ours.code == stock.code and "relu_default" not in stock.code
    monkeypatch.setattr(torch.fx.Graph, "eliminate_dead_code", lambda g, *a, **k: False)  # a step left out
    with Q._no_qat_pattern_search():
        broken = qat_utils._fold_conv_bn_qat_helper(copy.deepcopy(prepared), F.conv2d, CONV2D_PATTERN_INPUTS, False)
    assert broken.code != stock.code  # the comparison sees it


class QatShaped(nn.Module):
    """The shape torchao's QAT patterns give a conv-bn (qat_utils._get_quantized_qat_conv_bn_pattern):
    the conv's output divided by the BN scale factor, the conv bias added back, then the BatchNorm."""

    def __init__(self, bias: bool) -> None:
        super().__init__()
        self.conv, self.bn, self.bias = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), bias

    def forward(self, x):
        scale = torch.ones(4).reshape(1, 4, 1, 1) * 2
        y = self.conv(x) / scale
        return self.bn(y + torch.ones(1, 4, 1, 1) if self.bias else y)


def test_a_graph_shaped_as_qat_leaves_it_still_gets_the_search():
    for bias in (False, True):
        program = torch.export.export(QatShaped(bias).eval(), (torch.rand(1, 3, 8, 8),), strict=False)
        assert Q._qat_shaped(program.module())
    torch.manual_seed(0)
    conv_bn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    assert not Q._qat_shaped(_convert_to_reference_decomposed_fx(_prepared(conv_bn)))  # PTQ folded that BN


def test_calibration_runs_on_one_thread(monkeypatch):
    """What the observers see must not depend on the thread count (DeepLabV3's int8 file differed
    between 1 and 2 threads; the real-architecture check: test_deeplab_slow)."""
    import torchao.quantization.pt2e.quantize_pt2e as pt2e

    seen = []

    def prepare(model, quantizer):
        prepared = prepare_pt2e(model, quantizer)
        prepared.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
        return prepared

    monkeypatch.setattr(pt2e, "prepare_pt2e", prepare)
    x = torch.rand(1, 3, 8, 8)
    program = torch.export.export(ReluThenBN().eval(), (x,), strict=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Q.quantize(program, Variant(backend="xnnpack", precision="int8"), [x, x])
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
