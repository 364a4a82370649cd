"""What quantization needs to know of a stage graph: its weighted layers and which norm feeds which.

A layer is a Conv, MatMul or Gemm node. Its weight is a constant (initializer) or, for attention's
activation x activation MatMuls, nothing. Node names follow the exporter's module scopes
(`/blocks.0/attn/qkv/MatMul` is module `blocks.0.attn.qkv`), which is how a model description such as
`Student.awq_groups()` maps onto the graph.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")
INT4_BLOCKS = (128, 64, 32)  # largest first: fewer scales


@dataclass
class Layer:
    name: str  # node name
    op: str
    weight: str | None  # initializer name; None for activation x activation MatMul
    bias: str | None  # float bias initializer (Conv/Gemm input 2, or MatMul's following Add)
    out: str  # the layer's output tensor, after its bias
    shape: tuple[int, ...]  # weight shape
    k_axis: int  # weight axis that is reduced (input channels)
    n_axis: int  # weight axis of output channels

    @property
    def module(self) -> str:
        return module_path(self.name)

    @property
    def int4_block(self) -> int | None:
        """Block size along K for INT4, or None when the layer cannot be INT4 (TensorRT: MatMul/Gemm,
        2-D constant weight only)."""
        if self.op not in ("MatMul", "Gemm") or self.weight is None or len(self.shape) != 2:
            return None
        k = self.shape[self.k_axis]
        return next((b for b in INT4_BLOCKS if k % b == 0), None)

    @property
    def params(self) -> int:
        return int(np.prod(self.shape)) if self.weight else 0


def module_path(node_name: str) -> str:
    """'/blocks.0/attn/qkv/MatMul' -> 'blocks.0.attn.qkv' (the torch module the node came from)."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1])


def initializers(model) -> dict:
    return {i.name: i for i in model.graph.initializer}


def consumers(model) -> dict[str, list]:
    out = defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            out[i].append(n)
    return out


def inline_identities(model) -> None:
    """Replace Identity(initializer) nodes by a copy of the initializer under the output's name.

    The exporter shares equal parameters (e.g. two LayerNorms' weights) through Identity nodes; AWQ must
    change one LayerNorm's gamma without touching the other, and quantizers expect plain initializers."""
    import onnx

    inits = initializers(model)
    keep = []
    for n in model.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            model.graph.initializer.append(t)
            inits[t.name] = t
        else:
            keep.append(n)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def find_layers(model) -> list[Layer]:
    """Every Conv / MatMul / Gemm of the graph, in graph order."""
    inits, cons = initializers(model), consumers(model)
    layers = []
    for n in model.graph.node:
        if n.op_type not in WEIGHTED_OPS:
            continue
        w = n.input[1] if n.input[1] in inits else None
        shape = tuple(inits[w].dims) if w else ()
        bias, out = (n.input[2] if len(n.input) > 2 and n.input[2] in inits else None), n.output[0]
        if n.op_type == "MatMul":
            k_axis, n_axis = 0, 1  # x (.., K) @ W (K, N)
            nxt = cons.get(out, [])
            if len(nxt) == 1 and nxt[0].op_type == "Add":
                other = [i for i in nxt[0].input if i != out]
                if other and other[0] in inits and len(inits[other[0]].dims) == 1:
                    bias, out = other[0], nxt[0].output[0]
        elif n.op_type == "Gemm":
            trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
            k_axis, n_axis = (1, 0) if trans_b else (0, 1)
        else:  # Conv: W (Cout, Cin/g, kh, kw)
            k_axis, n_axis = 1, 0
        layers.append(Layer(n.name, n.op_type, w, bias, out, shape, k_axis, n_axis))
    return layers


def norm_groups(model, layers: list[Layer], description: list | None = None) -> dict[str, list[str]]:
    """LayerNormalization node name -> the layer names that read its output and can take AWQ's scale.

    `description` is the model's own account, [(norm module, [linear modules])] as `Student.awq_groups()`
    gives it (stored in the manifest as "awq_groups"); without one, the graph pattern LayerNormalization
    -> MatMul is used. A group is kept only if every consumer of the norm's output (Shape nodes aside,
    which read only its shape) is a MatMul of the group, so folding 1/s into gamma/beta is exact."""
    by_name = {layer.name: layer for layer in layers}
    cons = consumers(model)
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    groups = {}
    for ln in norms:
        readers = [c for c in cons.get(ln.output[0], []) if c.op_type != "Shape"]
        names = [c.name for c in readers]
        if not readers or any(nm not in by_name or by_name[nm].op != "MatMul" or by_name[nm].weight is None
                              for nm in names):
            continue
        if description is not None:
            wanted = {tuple(sorted(m)) for norm, m in description if norm == module_path(ln.name)}
            if tuple(sorted(by_name[nm].module for nm in names)) not in wanted:
                continue
        groups[ln.name] = names
    return groups
