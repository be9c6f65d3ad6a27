"""The machine a number was measured on: OS, CPU model, the instruction sets the kernels pick from,
and each engine's thread count. A latency ratio from another host cannot be read without these.
Also the one answer to "does this host's ExecuTorch runtime run that delegate?" (`runs_here`)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from export.bench_records import BenchHost, HostPeak, KernelRate

# The instruction sets XNNPACK, MLAS (ONNX Runtime) and oneDNN (PyTorch) choose kernels by, as
# /proc/cpuinfo (x86) and Linux's arm64 hwcaps name them; everything else in the flag list is noise here.
X86_ISA = (
    *("avx", "fma", "f16c", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16"),
    *("amx_tile", "amx_int8", "amx_bf16"),
)
ARM_ISA = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")
# macOS names the same features FEAT_* under `sysctl hw.optional.arm`
DARWIN_ISA = {
    "FEAT_FP16": "asimdhp",
    "FEAT_DotProd": "asimddp",
    "FEAT_I8MM": "i8mm",
    "FEAT_BF16": "bf16",
    "FEAT_SME": "sme",
}


def _sysctl(*args: str) -> str:
    proc = subprocess.run(["sysctl", *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _cpuinfo() -> list[tuple[str, str]]:
    """(key, value) lines of /proc/cpuinfo."""
    text = Path("/proc/cpuinfo").read_text(encoding="utf8", errors="replace")
    return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines())]


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC", "Apple M1 (Virtual)"), or the machine type."""
    if sys.platform == "darwin":
        return _sysctl("-n", "machdep.cpu.brand_string") or platform.machine()
    if sys.platform.startswith("linux"):
        for key, value in _cpuinfo():
            if key in ("model name", "Model", "Hardware") and value:
                return value
    return platform.processor() or platform.machine()


def isa() -> list[str]:
    """The kernel-relevant instruction sets this CPU has (see X86_ISA / ARM_ISA)."""
    if sys.platform == "darwin":
        found = ["asimd"] if platform.machine() == "arm64" else []  # NEON is baseline on Apple silicon
        for line in _sysctl("hw.optional.arm").splitlines():
            key, _, value = line.partition(":")
            feature = DARWIN_ISA.get(key.strip().rsplit(".", 1)[-1])
            if feature and value.strip() == "1":
                found.append(feature)
        return sorted(set(found), key=ARM_ISA.index)
    flags: set[str] = set()
    if sys.platform.startswith("linux"):
        flags = next((set(value.split()) for key, value in _cpuinfo() if key in ("flags", "Features")), set())
    known = X86_ISA if platform.machine() in ("x86_64", "AMD64") else ARM_ISA
    return [f for f in known if f in flags]


def physical_cores() -> int | None:
    """Physical cores: distinct (package, core) pairs in Linux's topology, macOS's hw.physicalcpu."""
    if sys.platform == "darwin":
        n = _sysctl("-n", "hw.physicalcpu")
        return int(n) if n.isdigit() else None
    pairs = set()
    for topology in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
        try:
            pairs.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            continue
    return len(pairs) or None


def describe(threads: dict[str, int], versions: dict[str, str], kernels: tuple[KernelRate, ...] = ()) -> BenchHost:
    """bench.json's `host`: `threads` as each engine was configured (torch, executorch, onnxruntime);
    `kernels`: the kernel probe (export.checks.kernels), whose GEMM rate is a floor under the clock."""
    found = tuple(isa())
    cores = threads.get("executorch", os.cpu_count() or 1)
    gemm = max((k.gmacs for k in kernels if k.engine == "torch" and k.threads == cores), default=None)
    return BenchHost(
        os=f"{platform.system()} {platform.release()}",
        machine=platform.machine(),
        cpu=cpu_model(),
        isa=found,
        cpus=os.cpu_count(),
        cores=physical_cores(),
        threads=threads,
        versions=versions,
        peak=peak(found, cores, gemm),
        kernels=kernels,
    )


# MACs one core issues per cycle, by the best instruction set found, as (fp32, int8, which basis).
# Assumed two SIMD FMA / dot-product units per core (Zen 2-4, Ice Lake and later server cores; Apple
# and Neoverse cores have four 128-bit units: the same 16 fp32 lanes). int8 before VNNI/SDOT: XNNPACK's
# 16-bit multiply-add sequence, half the lanes of a dot product.
PER_CYCLE = (
    ("avx512_vnni", 32, 128, "avx512f FMA x2, avx512_vnni x2"),
    ("avx512f", 32, 64, "avx512f FMA x2, avx512bw madd x2"),
    ("avx_vnni", 16, 64, "avx2 FMA x2, avx_vnni x2"),
    ("avx2", 16, 32, "avx2 FMA x2, avx2 madd x2"),
    ("i8mm", 16, 128, "NEON FMA x4, i8mm x4"),
    ("asimddp", 16, 64, "NEON FMA x4, sdot x4"),
    ("asimd", 16, 32, "NEON FMA x4, smlal x4"),
)
ASSUMED_GHZ = 3.0


def clock_ghz() -> tuple[float, str]:
    """The CPU's clock: its maximum where the OS says, else the current one it reports, else assumed."""
    cpufreq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(cpufreq.read_text()) / 1e6, f"read: {cpufreq}"
    except (OSError, ValueError):
        pass
    if sys.platform.startswith("linux"):
        mhz = [float(v) for k, v in _cpuinfo() if k == "cpu MHz" and v.replace(".", "", 1).isdigit()]
        if mhz:
            return max(mhz) / 1e3, "read: /proc/cpuinfo cpu MHz (the current clock; boost may be higher)"
    if sys.platform == "darwin":
        hz = _sysctl("-n", "hw.cpufrequency_max")
        if hz.isdigit():
            return int(hz) / 1e9, "read: sysctl hw.cpufrequency_max"
    return ASSUMED_GHZ, f"assumed {ASSUMED_GHZ} GHz: the OS does not say"


def peak(found: tuple[str, ...], cores: int, gemm_gmacs: float | None = None) -> HostPeak | None:
    """The host's peak MAC rate for `cores` threads, or None for instruction sets not in PER_CYCLE.
    `gemm_gmacs`, a measured fp32 GEMM rate on `cores` threads, is a floor: a clock the OS reports
    below what that GEMM needs (a VM's nominal clock under boost) is raised to it, and says so."""
    row = next((r for r in PER_CYCLE if r[0] in found), None)
    if row is None or cores < 1:
        return None
    _, fp32, int8, basis = row
    ghz, source = clock_ghz()
    if gemm_gmacs is not None and gemm_gmacs / (cores * fp32) > ghz:
        needed = gemm_gmacs / (cores * fp32)
        source = f"measured floor: torch's fp32 GEMM ran {gemm_gmacs:.1f} GMAC/s, which needs >= {needed:.2f} GHz ({source} said {ghz:.2f})"
        ghz = needed
    return HostPeak(cores, round(ghz, 3), source, fp32, int8, basis, cores * ghz * fp32, cores * ghz * int8)


def label(host: BenchHost) -> str:
    """One line naming the host, for tables and headings: "AMD EPYC (x86_64; avx2, avx512f, …)"."""
    sets = ", ".join(host.isa) or "no SIMD extension found"
    return f"{host.cpu} ({host.machine}, {host.cpus} CPUs; {sets})"


def host_description() -> str:
    """OS, machine and the chip: a hosted runner may lack the Neural Engine or GPU."""
    return f"{platform.system()} {platform.release()} {platform.machine()}, {cpu_model()}"


def runs_here(delegate: str) -> bool:
    """Is the delegate (e.g. XnnpackBackend, CoreMLBackend) in this host's ExecuTorch runtime? Core ML
    is only in the macOS arm64 wheels: on Linux its files are lowered and checked but never run."""
    from export.threads import runtime  # the runtime loads native kernels: only callers that run files

    return runtime().backend_registry.is_available(delegate)
