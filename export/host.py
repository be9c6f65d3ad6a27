"""The machine a number was measured on: OS, CPU model, the instruction sets the kernels pick from,
and each engine's thread count. A latency ratio from another host cannot be read without these.
Also the one answer to "does this host's ExecuTorch runtime run that delegate?" (`runs_here`)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from export.bench_records import CLOCK_FLOOR, BenchHost, HostPeak, KernelRate

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


def describe(
    threads: dict[str, int],
    versions: dict[str, str],
    kernels: tuple[KernelRate, ...] = (),
    achieved: dict[str, tuple[str, float]] | None = None,
) -> BenchHost:
    """bench.json's `host`: `threads` as each engine was configured (torch, executorch, onnxruntime);
    `kernels`: the kernel probe (export.checks.kernels); `achieved`: engine -> (precision, GMAC/s) it
    ran at on those threads. Every measured rate is a floor under the clock (see peak)."""
    found = tuple(isa())
    cores = threads.get("executorch", os.cpu_count() or 1)
    measured = {f"{k.engine} {k.kind}": ("fp32", k.gmacs) for k in kernels if k.threads == cores}
    return BenchHost(
        os=f"{platform.system()} {platform.release()}",
        machine=platform.machine(),
        cpu=cpu_model(),
        isa=found,
        cpus=os.cpu_count(),
        cores=physical_cores(),
        threads=threads,
        versions=versions,
        peak=peak(found, cores, {**measured, **(achieved or {})}, cpu_family()),
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
# AMD's Zen 4 (family 25 with AVX-512) runs 512-bit instructions on the 256-bit units it shares with
# Zen 3 ("double-pumped", A. Yee's Zen 4 and Zen 5 AVX-512 teardowns): an AVX2 core's MACs per cycle.
# Zen 5 (family 26) and Intel's server cores have 512-bit units.
HALF_WIDTH_AVX512 = {("AuthenticAMD", 25): (16, 64, "avx512f on 256-bit FMA x2 (Zen 4), avx512_vnni likewise")}
ASSUMED_GHZ = 3.0


def cpu_family() -> tuple[str, int] | None:
    """(vendor_id, cpu family) of an x86 Linux host, from /proc/cpuinfo; None where it does not say."""
    if not sys.platform.startswith("linux"):
        return None
    info = dict(reversed(_cpuinfo()))  # the first CPU's lines
    family = info.get("cpu family", "")
    return (info["vendor_id"], int(family)) if "vendor_id" in info and family.isdigit() else None


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


def peak(
    found: tuple[str, ...],
    cores: int,
    measured: dict[str, tuple[str, float]] | None = None,
    family: tuple[str, int] | None = None,
) -> HostPeak | None:
    """The host's peak MAC rate for `cores` threads, or None for instruction sets not in PER_CYCLE.
    `measured`: what -> (precision, GMAC/s) something ran at on `cores` threads. Each is a floor: a
    clock the OS reports below what the fastest of them needs (a VM's nominal clock under boost) is
    raised to it, and says which."""
    row = next((r for r in PER_CYCLE if r[0] in found), None)
    if row is None or cores < 1:
        return None
    _, fp32, int8, basis = row
    if "avx512f" in found and family in HALF_WIDTH_AVX512:
        fp32, int8, basis = HALF_WIDTH_AVX512[family]
    ghz, source = clock_ghz()
    measured = measured or {}
    per_cycle = {"fp32": fp32, "int8": int8}
    needs = {what: gmacs / (cores * per_cycle[p]) for what, (p, gmacs) in measured.items() if p in per_cycle}
    fastest = max(needs, key=lambda w: needs[w], default=None)
    if fastest is not None and needs[fastest] > ghz:
        p, gmacs = measured[fastest]
        source = (
            f"{CLOCK_FLOOR}: {fastest} ran {gmacs:.1f} {p} GMAC/s, which needs >= {needs[fastest]:.2f} GHz"
            f" ({source} said {ghz:.2f})"
        )
        ghz = needs[fastest]
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
