"""The device fingerprint: /etc/nv_tegra_release lines as JetPack writes them, ids, the engine check."""
from __future__ import annotations

import pytest

from edge_runtime.bundle import EngineEntry, EngineStage
from edge_runtime.fingerprint import DeviceFingerprint, detect, engine_status, parse_nv_tegra_release

# First lines of /etc/nv_tegra_release as found on devices (JetPack 5.1 = L4T 35.2.1, 6.0 = 36.3.0,
# 6.2 = 36.4.3); JetPack 6 files carry more lines after it.
JP51 = "# R35 (release), REVISION: 2.1, GCID: 32413640, BOARD: t186ref, EABI: aarch64, DATE: Tue Jan 24 23:38:33 UTC 2023\n"
JP60 = ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, "
        "DATE: Mon May  6 17:34:21 UTC 2024\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n"
        "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n")
JP62 = ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
        "DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n"
        "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n")


@pytest.mark.parametrize("text,version,jetpack,board", [
    (JP51, "35.2.1", "5.1", "t186ref"),
    (JP60, "36.3.0", "6.0", "generic"),
    (JP62, "36.4.3", "6.2", "generic"),
])
def test_parses_real_release_lines(text, version, jetpack, board):
    rel = parse_nv_tegra_release(text)
    assert (rel.version, rel.jetpack, rel.board) == (version, jetpack, board)


def test_not_a_jetson():
    assert parse_nv_tegra_release("") is None
    assert parse_nv_tegra_release("Ubuntu 22.04.4 LTS\n") is None
    assert parse_nv_tegra_release("# R36 (release), REVISION: 4.3").version == "36.4.3"  # short form


def test_detect_reads_the_release_file_and_works_without_tensorrt(tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text(JP62)
    fp = detect(str(f))
    assert fp.l4t == "36.4.3"
    assert detect(str(tmp_path / "absent")).l4t is None  # never raises


def test_ids_are_stable_readable_and_differ_by_every_field():
    base = DeviceFingerprint("10.3.0.30", "12.6", "Orin", "8.7", "36.4.3")
    assert base.id == DeviceFingerprint("10.3.0.30", "12.6", "Orin", "8.7", "36.4.3").id
    assert base.id.startswith("sm87-trt10.3.0.30-cuda12.6-l4t36.4.3-")
    variants = [DeviceFingerprint("10.3.0.31", "12.6", "Orin", "8.7", "36.4.3"),
                DeviceFingerprint("10.3.0.30", "12.2", "Orin", "8.7", "36.4.3"),
                DeviceFingerprint("10.3.0.30", "12.6", "Orin (nvgpu)", "8.7", "36.4.3"),
                DeviceFingerprint("10.3.0.30", "12.6", "Orin", "8.6", "36.4.3"),
                DeviceFingerprint("10.3.0.30", "12.6", "Orin", "8.7", "36.4.4")]
    assert len({v.id for v in variants} | {base.id}) == 6
    assert "/" not in DeviceFingerprint("10", "12", "A/B", "8.7", None).id


def test_engine_status_ok_and_missing():
    entry = EngineEntry("fp32", [EngineStage("engines/d/stage0.engine", "s0.onnx", "h")], active=True)
    assert engine_status({"d": entry}, "d", "fp32", ["s0.onnx"], {"s0.onnx": "h"})[0] == "ok"
    assert engine_status({}, "d", "fp32", ["s0.onnx"], {"s0.onnx": "h"})[0] == "missing"
    status, why = engine_status({"d": entry}, "e", "fp32", ["s0.onnx"], {"s0.onnx": "h"})
    assert status == "other-device" and "built for d" in why
