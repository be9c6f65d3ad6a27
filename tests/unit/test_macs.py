"""Multiply-accumulates read from an exported graph (export.convert.macs) against hand counts, and the host's
peak (export.host.peak) from its instruction sets and clock."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from export import host
from export.convert.macs import count
from export.convert.rewrite import trim_padded_taps
from export.sources.models import TinySegNet


def macs_of(module: nn.Module, *shape: int) -> dict[str, int]:
    return count(torch.export.export(module.eval(), (torch.zeros(*shape),)))


def test_tiny_net_matches_the_hand_count():
    # 64x64, only (output, tap) pairs that read inside the input: conv 3->16 3x3 stride 2 pad 1 -> 32x32
    # (per axis: tap 0 misses input row -1 at output 0: 31 + 32 + 32 = 95), conv 16->32 3x3 pad 1 -> 32x32
    # (31 + 32 + 31 = 94), classifier 32->21 1x1 -> 32x32
    hand = 16 * 3 * 95 * 95 + 32 * 16 * 94 * 94 + 21 * 32 * 32 * 32
    assert macs_of(TinySegNet(21), 1, 3, 64, 64) == {"conv": hand}


def test_grouped_transposed_linear_and_batched_matmul_by_hand():
    class Attention(nn.Module):
        def forward(self, x):  # [1, 4, 8, 6]: 4 heads of 8 tokens x 6 dims
            scores = x @ x.transpose(-1, -2)  # 4 x (8x6 @ 6x8)
            return scores.softmax(-1) @ x  # 4 x (8x8 @ 8x6)

    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)  # 2 input channels x the taps inside (9+10+9 per axis)
    assert macs_of(grouped, 1, 8, 10, 10) == {"conv": 8 * 2 * 28 * 28}
    same = nn.Conv2d(8, 8, 3, padding="same", dilation=2)  # taps at -2, 0, +2: 8 + 10 + 8 per axis
    assert macs_of(same, 1, 8, 10, 10) == {"conv": 8 * 8 * 26 * 26}
    up = nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2)  # each input element feeds 3 outputs x 4 taps
    assert macs_of(up, 1, 4, 5, 5) == {"conv_transpose": 4 * 5 * 5 * 3 * 4}
    assert macs_of(nn.Linear(7, 3), 2, 5, 7) == {"linear": 2 * 5 * 7 * 3}
    assert macs_of(Attention(), 1, 4, 8, 6) == {"matmul": 4 * 8 * 8 * 6 + 4 * 8 * 6 * 8}


def test_taps_on_padding_are_not_work_so_stock_and_trimmed_graphs_count_alike():
    """A dilated 3x3 on a map smaller than its dilation reads only padding off-centre: its work is
    the centre tap's, whether the graph multiplies the zeros (stock) or a rewrite trimmed them."""
    conv = nn.Sequential(nn.Conv2d(4, 4, 3, padding=12, dilation=12))
    x = torch.zeros(1, 4, 8, 8)
    trimmed, names = trim_padded_taps(conv, x)
    assert names, "the rewrite should trim this convolution"
    assert count(torch.export.export(trimmed.eval(), (x,))) == macs_of(conv, 1, 4, 8, 8) == {"conv": 4 * 8 * 8 * 4}


@pytest.mark.parametrize(
    ("isa", "fp32", "int8"),
    [
        (("avx", "fma", "avx2"), 16, 32),
        (("avx", "fma", "avx2", "avx_vnni"), 16, 64),
        (("avx2", "avx512f", "avx512bw"), 32, 64),
        (("avx2", "avx512f", "avx512_vnni"), 32, 128),
        (("asimd", "asimddp"), 16, 64),
    ],
)
def test_peak_is_cores_times_clock_times_the_instruction_sets_per_cycle(isa, fp32, int8, monkeypatch):
    monkeypatch.setattr(host, "clock_ghz", lambda: (2.5, "read: test"))
    p = host.peak(isa, 2)
    assert p is not None and (p.fp32_macs_per_cycle, p.int8_macs_per_cycle) == (fp32, int8)
    assert p.fp32_gmacs == pytest.approx(2 * 2.5 * fp32) and p.int8_gmacs == pytest.approx(2 * 2.5 * int8)
    assert host.peak(("avx", "fma"), 2) is None  # no figure for it: said as unknown, never guessed


def test_a_measured_rate_faster_than_the_read_clock_allows_raises_the_clock_and_names_it(monkeypatch):
    """A VM's /proc/cpuinfo states its nominal clock while the core boosts: ONNX Runtime then ran at
    143 % of "peak" (AMD EPYC, 2.44 GHz read). Whatever ran on the same cores is a floor: the kernel
    probe's GEMM, and each engine of the run (int8 against int8's MACs per cycle)."""
    monkeypatch.setattr(host, "clock_ghz", lambda: (2.0, "read: test"))
    avx2 = ("avx", "fma", "avx2")  # 16 fp32, 32 int8 MACs per cycle
    below = host.peak(avx2, 2, {"torch fp32 GEMM": ("fp32", 50.0)})  # needs 1.56 GHz: the read clock stands
    assert below is not None and below.clock_ghz == 2.0 and below.clock_source == "read: test"
    rates = {"torch fp32 GEMM": ("fp32", 96.0), "model.pte": ("fp32", 80.0)}  # 96 needs 3.0 GHz x 16 x 2 cores
    above = host.peak(avx2, 2, rates)
    assert above is not None and above.clock_ghz == pytest.approx(3.0) and above.fp32_gmacs == pytest.approx(96.0)
    assert above.clock_source.startswith("measured floor: torch fp32 GEMM ran 96.0 fp32 GMAC/s")
    assert "read: test said 2.00" in above.clock_source and above.clock_is_floor and not below.clock_is_floor
    # an int8 file at 224 GMAC/s needs 3.5 GHz at 32 int8 MACs per cycle: it is the floor, not the GEMM
    fastest = host.peak(avx2, 2, {**rates, "model_int8.pte": ("int8", 224.0)})
    assert (
        fastest is not None and fastest.clock_ghz == pytest.approx(3.5) and "model_int8.pte ran" in fastest.clock_source
    )
    assert fastest.int8_gmacs == pytest.approx(224.0)  # no engine above 100 % of its precision's peak


@pytest.mark.parametrize(
    ("family", "fp32", "int8"),
    [
        (("AuthenticAMD", 25), 16, 64),  # Zen 4: AVX-512 on 256-bit units
        (("AuthenticAMD", 26), 32, 128),  # Zen 5: 512-bit units
        (("GenuineIntel", 6), 32, 128),
        (None, 32, 128),
    ],
)
def test_zen4_runs_avx512_at_half_width(family, fp32, int8, monkeypatch):
    """Zen 4's double-pumped AVX-512 would otherwise put every engine at half its share of peak (the
    AMD EPYC Zen 4 host: the fp32 file at 61 % of a peak it cannot reach)."""
    monkeypatch.setattr(host, "clock_ghz", lambda: (2.5, "read: test"))
    p = host.peak(("avx2", "avx512f", "avx512_vnni"), 2, None, family)
    assert p is not None and (p.fp32_macs_per_cycle, p.int8_macs_per_cycle) == (fp32, int8)
    zen3 = host.peak(("avx", "fma", "avx2"), 2, None, ("AuthenticAMD", 25))  # no AVX-512: the AVX2 row
    assert zen3 is not None and (zen3.fp32_macs_per_cycle, zen3.int8_macs_per_cycle) == (16, 32)


def test_the_cpu_family_is_read_from_the_first_cpu(monkeypatch):
    lines = [("vendor_id", "AuthenticAMD"), ("cpu family", "25"), ("model", "17"), ("vendor_id", "Other")]
    monkeypatch.setattr(host, "_cpuinfo", lambda: lines)
    monkeypatch.setattr(host.sys, "platform", "linux")
    assert host.cpu_family() == ("AuthenticAMD", 25)
    monkeypatch.setattr(host, "_cpuinfo", lambda: [("processor", "0")])  # arm64 Linux: no vendor_id
    assert host.cpu_family() is None


def test_physical_cores_are_distinct_package_and_core_pairs():
    cores = host.physical_cores()
    assert cores is None or 1 <= cores <= (os.cpu_count() or 1)


def test_the_clock_is_read_where_the_os_says_else_stated_as_assumed(monkeypatch):
    ghz, source = host.clock_ghz()
    assert ghz > 0 and (source.startswith("read: ") or source.startswith("assumed "))
    monkeypatch.setattr(host, "_cpuinfo", lambda: [])
    monkeypatch.setattr(host.Path, "read_text", lambda *a, **k: (_ for _ in ()).throw(OSError("none")))
    monkeypatch.setattr(host.sys, "platform", "linux")
    assert host.clock_ghz() == (host.ASSUMED_GHZ, f"assumed {host.ASSUMED_GHZ} GHz: the OS does not say")
