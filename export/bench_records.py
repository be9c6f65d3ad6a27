"""What one `make bench` run on one host writes: bench.json (`Bench`: the host, each engine's
latency and GMAC/s, int8 accuracy, the resize cost) and profile.json (`Profile`: op by op), each
with its JSON Schema beside it (export.records.write_with_schema). No torch import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from export.records import STRICT

# --- bench.json: one `make bench` run on one host (the card's host benchmark sections) -----------

BENCH_SCHEMA_VERSION: Literal[5] = 5
BENCH_NAME, BENCH_SCHEMA_NAME = "bench.json", "bench.schema.json"


CLOCK_FLOOR = "measured floor"  # HostPeak.clock_source's start when a measured rate set the clock


@dataclass(frozen=True)
class HostPeak:
    """What the CPU can do at most, in multiply-accumulates per second (export.host.peak): the threads
    the engines use × the clock × the MACs one core issues per cycle for the instruction sets found."""

    __pydantic_config__ = STRICT
    cores: int  # the engines' thread count
    clock_ghz: float
    clock_source: str  # where the clock came from, or "assumed …"
    fp32_macs_per_cycle: int  # per core: FMA units × SIMD lanes (assumed from the instruction sets)
    int8_macs_per_cycle: int  # per core: dot-product (VNNI, SDOT) units × lanes, or the pre-VNNI sequence
    isa_basis: str  # the instruction sets those two figures assume
    fp32_gmacs: float
    int8_gmacs: float

    @property
    def clock_is_floor(self) -> bool:
        """The clock was raised to what a measured rate needs: the real peak may be higher, each
        share of it lower."""
        return self.clock_source.startswith(CLOCK_FLOOR)


@dataclass(frozen=True)
class KernelRate:
    """One convolution (or GEMM) of a fixed shape timed in one engine on this host (export.checks.kernels)."""

    __pydantic_config__ = STRICT
    engine: str  # xnnpack (as ExecuTorch lowers it), onnxruntime, torch
    kind: str  # "fp32 3x3 convolution", "… as 9 1x1 taps", "fp32 1x1 convolution", "fp32 GEMM"
    shape: str
    threads: int
    median_ms: float
    gmacs: float


@dataclass(frozen=True)
class BenchHost:
    __pydantic_config__ = STRICT
    os: str
    machine: str
    cpu: str
    isa: tuple[str, ...]  # the SIMD extensions found (export.host.isa)
    cpus: int | None  # logical CPUs the OS reports
    cores: int | None  # physical cores (hyper-threads share one core's SIMD units); None: the OS does not say
    threads: dict[str, int]  # as each engine was configured: torch, executorch, onnxruntime
    versions: dict[str, str]  # python, the tool packages, onnxruntime
    peak: HostPeak | None = None  # None: no per-cycle figure known for this CPU's instruction sets
    kernels: tuple[KernelRate, ...] = ()  # the kernel probe: what this host's kernels reach per kind


@dataclass(frozen=True)
class EngineTiming:
    __pydantic_config__ = STRICT
    median_ms: float
    min_ms: float
    max_ms: float
    ratio_to_eager: float
    ratio_to_onnxruntime: float  # × ONNX Runtime fp32 on the same wrapped model
    ratio_to_peer: float  # × its peer: ONNX Runtime int8 (static QDQ) for an int8 file, else fp32
    coreml_compute_units: str | None = None  # what a Core ML file asks for
    ratio_to_fp32: float | None = None  # an int8 file × its fp32 sibling
    load_ms: float | None = None  # a file: load time in a fresh process
    peak_rss_increment_mb: float | None = None  # a file: load + 3 runs, in a fresh process
    gmac: float | None = None  # multiply-accumulates of its program, 1e9 (export.convert.macs)
    gmacs: float | None = None  # achieved: gmac / median seconds
    peak_share: float | None = None  # gmacs / the host's peak for its precision (int8 engines: int8's)


@dataclass(frozen=True)
class BenchAccuracy:
    """An int8 engine vs eager fp32 on the held-apart photos (the export gate's metrics, worst photo)."""

    __pydantic_config__ = STRICT
    snr_vs_noise_db: float
    centered_snr_db: float
    decisive_agreement: float
    argmax_agreement: float


@dataclass(frozen=True)
class ResizeCost:
    """What the hook's forward(resize=True) adds, for ARGMAX plus one class."""

    __pydantic_config__ = STRICT
    artifact: str
    image: str  # WxH of the photo the maps are resized to
    classes: int
    forward_ms: float
    resize_cost_ms: float


@dataclass(frozen=True)
class Bench:
    __pydantic_config__ = STRICT
    schema: Literal[5]
    models: tuple[str, ...]
    input: str
    runs: int
    warmup: int
    host: BenchHost
    artifacts: dict[str, str]  # the files measured -> sha256 (a stale bench shows)
    engines: dict[str, EngineTiming]
    peers: dict[str, str]  # file -> the ONNX Runtime engine its ratio_to_peer is against
    int8_accuracy: dict[str, BenchAccuracy]
    not_run: dict[str, str]  # file -> why it was not timed here
    resize: ResizeCost | None


# --- profile.json: `bench --profile`, op by op (export.checks.op_profile) ------------------------------

PROFILE_SCHEMA_VERSION: Literal[2] = 2
PROFILE_NAME, PROFILE_SCHEMA_NAME, PROFILE_CHART = "profile.json", "profile.schema.json", "profile.png"


@dataclass(frozen=True)
class OpTime:
    __pydantic_config__ = STRICT
    op: str  # the runtime's name: an XNNPACK operator, a portable kernel, an ONNX Runtime node
    kind: str  # the kind of work it is grouped into (export.checks.op_profile.KINDS)
    ms: float  # median per inference


@dataclass(frozen=True)
class EngineProfile:
    __pydantic_config__ = STRICT
    total_ms: float  # one traced inference, median
    outside_delegate_ms: float  # a .pte: time outside the delegate (ONNX Runtime: 0)
    kinds: dict[str, float]  # ms per kind of work
    top: tuple[OpTime, ...]  # the slowest ops, slowest first
    outside_ops: tuple[OpTime, ...] = ()  # a .pte: the ops the delegate did not take


@dataclass(frozen=True)
class Profile:
    __pydantic_config__ = STRICT
    schema: Literal[2]
    runs: int
    host: str  # export.host.label
    engines: dict[str, EngineProfile]
