"""Cost of an ONNX graph per node: FLOPs (multiply-adds x 2) and weight bytes, batch 1.

Shared by export (FLOPs per stage in the manifest), bench (teacher vs student) and the latency estimate.
Only the ops that carry the arithmetic are counted (Conv, ConvTranspose, MatMul, Gemm, and their
quantized forms); element-wise ops are cheap next to them and are left out.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass
class NodeCost:
    name: str
    op: str
    flops: int  # multiply-adds x 2, batch 1
    weight_elems: int  # elements of the constant (initializer) inputs


def _load(model_or_path):
    """Shapes inferred at batch 1: symbolic input dims are pinned to 1 and shape computations
    (Shape -> Gather -> Concat -> Reshape, as exporters write for a dynamic batch) are propagated, so
    every MatMul behind a Reshape has a static shape to count."""
    import onnx

    if isinstance(model_or_path, (str, os.PathLike)):
        model = onnx.load(str(model_or_path))
    else:
        model = onnx.ModelProto()
        model.CopyFrom(model_or_path)
    for inp in model.graph.input:
        for d in inp.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


def _shapes(model) -> dict[str, list[int]]:
    """Static shapes of every value; symbolic dims (the batch) count as 1."""
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def node_costs(model_or_path) -> list[NodeCost]:
    model = _load(model_or_path)
    shapes = _shapes(model)
    inits = {i.name for i in model.graph.initializer}
    # weights reached through DequantizeLinear count as constants too
    dq_out = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    costs = []
    for node in model.graph.node:
        flops = _node_flops(node, shapes)
        consts = [i for i in node.input if i in inits or dq_out.get(i) in inits]
        elems = sum(int(np.prod(shapes.get(i, shapes.get(dq_out.get(i), [0])))) for i in consts)
        costs.append(NodeCost(node.name or node.op_type, node.op_type, flops,
                              elems if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") else 0))
    return costs


def _node_flops(node, shapes) -> int:
    op = node.op_type
    out = shapes.get(node.output[0]) if node.output else None
    if out is None:
        return 0
    if op in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"):
        w = shapes.get(node.input[3] if op == "QLinearConv" else node.input[1])
        if not w:
            return 0
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        per_out = int(np.prod(w[1:]))  # (Cin/groups) * kh * kw
        if op == "ConvTranspose":
            return 2 * int(np.prod(shapes.get(node.input[0], [0]))) * w[1] * int(np.prod(w[2:])) // max(group, 1)
        return 2 * int(np.prod(out)) * per_out
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"):
        a = shapes.get(node.input[0])
        if not a:
            return 0
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        k = a[-2] if (op == "Gemm" and trans_a) else a[-1]
        return 2 * int(np.prod(out)) * int(k)
    return 0


def graph_flops(model_or_path) -> int:
    """Total FLOPs of one graph, batch 1."""
    return sum(c.flops for c in node_costs(model_or_path))


def tensor_shapes(model) -> dict[str, list[int]]:
    """Static shapes of every value of a shape-inferred model (symbolic dims, such as the batch, as 1)."""
    return _shapes(model)


def load_inferred(model_or_path):
    """An ONNX model (path or ModelProto) with shapes and types inferred."""
    return _load(model_or_path)
