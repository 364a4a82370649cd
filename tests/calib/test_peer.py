import numpy as np
import onnx


def test_ort_default_int8_writes_runnable_qdq_stages(tiny_bundle, calib_dir, tmp_path):
    from calib.peer import ort_default_int8
    from calib.qdq import run

    paths = ort_default_int8(tiny_bundle, calib_dir, tmp_path / "peer")
    assert [p.name for p in paths] == ["stage0.onnx", "stage1.onnx", "stage2.onnx"]
    m = onnx.load(str(paths[0]))
    assert any(n.op_type == "QuantizeLinear" for n in m.graph.node)
    out = run(m, np.zeros((1, 3, 32, 32), np.float32))
    assert out["logits"].shape == (1, 4)
