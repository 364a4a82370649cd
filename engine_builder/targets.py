"""Jetson Orin targets: published peak GPU compute and memory bandwidth, with their sources.

Figures are for the GPU only (the DLA cores are not counted) at the module's maximum power mode, dense
(no 2:4 structured sparsity). NVIDIA publishes INT8 "sparse TOPS"; dense is half of that, and on the
Ampere tensor cores FP16 runs at half the INT8 rate. FP32 is the CUDA-core rate (cores x 2 x clock).

Sources:
- Jetson AGX Orin Series Technical Brief v1.2 (NVIDIA, July 2022): GPU 2048 CUDA cores / 64 tensor cores in
  16 SMs at up to 1.3 GHz, "170 Sparse INT8 TOPS", "5.3 FP32 TFLOPS"; 64 GB module LPDDR5 256-bit at
  204.8 GB/s.
- Jetson Orin NX Series Data Sheet (NVIDIA, DS-10712-001): Orin NX 16GB GPU 1024 CUDA cores / 32 tensor
  cores in 8 SMs at up to 918 MHz, module 100 TOPS (sparse INT8, GPU + 2 DLA); LPDDR5 128-bit 102.4 GB/s.
  GPU dense INT8 = 8 SMs x 4096 ops/clk x 0.918 GHz = 30.1 TOPS.
- Jetson Orin Nano Series Data Sheet (NVIDIA, DS-11105-001): Orin Nano 8GB GPU 1024 CUDA cores / 32 tensor
  cores at up to 625 MHz, 40 TOPS (sparse INT8, no DLA); LPDDR5 128-bit 68 GB/s. (JetPack 6.2's
  "Super" mode raises this to 1020 MHz / 67 TOPS / 102 GB/s; the estimate keeps the conservative figures.)

A data-centre GPU for comparison only (`edge-qwq plan`; not in `target_names("all")`, so `estimate` and
`build` stay on the Orins):
- NVIDIA L4 Tensor Core GPU datasheet (NVIDIA, 2023): 485 INT8 TOPS and 242 FP16 tensor TFLOPS "with
  sparsity" (dense: half), 30.3 FP32 TFLOPS, 24 GB GDDR6 at 300 GB/s, 72 W, PCIe Gen4 x16 "64 GB/s"
  (both directions: 32 GB/s each way). A discrete GPU: the tiles cross PCIe (`host_link_gbs`) instead of
  being copied within the DRAM that an Orin's CPU and GPU share.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    int8_tops: float  # dense INT8 tensor-core peak, 1e12 ops/s
    fp16_tflops: float  # dense FP16 tensor-core peak
    fp32_tflops: float  # CUDA cores
    bandwidth_gbs: float  # DRAM, 1e9 bytes/s (shared with the CPU)
    dla_cores: int
    source: str
    host_link_gbs: float = 0.0  # a discrete GPU's host-to-device link, one way, 1e9 bytes/s; 0: shared DRAM

    def peak_flops(self, precision: str) -> float:
        """Peak ops/s for a layer's compute precision ("int8", "fp16", "fp32"; INT4 weights compute in FP16)."""
        per = {"int8": self.int8_tops, "fp16": self.fp16_tflops, "int4": self.fp16_tflops,
               "fp32": self.fp32_tflops}
        return per[precision] * 1e12


TARGETS: dict[str, Target] = {
    "orin-agx": Target("orin-agx", "Jetson AGX Orin 64GB, MAXN", int8_tops=85.0, fp16_tflops=42.5,
                       fp32_tflops=5.3, bandwidth_gbs=204.8, dla_cores=2,
                       source="Jetson AGX Orin Series Technical Brief v1.2"),
    "orin-nx": Target("orin-nx", "Jetson Orin NX 16GB, MAXN", int8_tops=30.1, fp16_tflops=15.0,
                      fp32_tflops=1.88, bandwidth_gbs=102.4, dla_cores=2,
                      source="Jetson Orin NX Series Data Sheet DS-10712-001"),
    "orin-nano": Target("orin-nano", "Jetson Orin Nano 8GB, 15 W", int8_tops=20.5, fp16_tflops=10.2,
                        fp32_tflops=1.28, bandwidth_gbs=68.0, dla_cores=0,
                        source="Jetson Orin Nano Series Data Sheet DS-11105-001"),
}

# Compared against, never built for: a data-centre GPU (`edge-qwq plan`).
COMPARISON_TARGETS: dict[str, Target] = {
    "l4": Target("l4", "NVIDIA L4 24GB (data-centre PCIe card), 72 W", int8_tops=242.5, fp16_tflops=121.0,
                 fp32_tflops=30.3, bandwidth_gbs=300.0, dla_cores=0,
                 source="NVIDIA L4 Tensor Core GPU datasheet (2023)", host_link_gbs=32.0),
}

# `edge-qwq build --target orin` means: check against the smallest Orin we support.
ALIASES = {"orin": "orin-nano"}


def get_target(name: str) -> Target:
    from edge_runtime.errors import EdgeError

    key = ALIASES.get(name, name)
    if key in COMPARISON_TARGETS:
        return COMPARISON_TARGETS[key]
    if key not in TARGETS:
        raise EdgeError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)} (or 'all')")
    return TARGETS[key]


def target_names(spec: str) -> list[str]:
    """'all' -> every target; otherwise the one name (validated)."""
    return list(TARGETS) if spec == "all" else [get_target(spec).name]
