"""The class count baked into a DEIMv2 export's graph, read without the ``onnx`` package.

Published DEIMv2 files carry no class names; their post-processing computes
``label = index mod num_classes``, so the divisor tells how many classes the model has (80 means
COCO). The runtime depends only on onnxruntime, which does not expose graph constants, and there
is no rosdep key for the ``onnx`` package, so the few protobuf fields needed are read here
(field numbers are those of ``onnx.proto3``).
"""

from __future__ import annotations

import numpy as np


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """(field number, value) of a protobuf message: ints for varints, (start, end) for bytes."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield field, value
        elif wire == 2:
            n, i = _varint(buf, i)
            yield field, (i, i + n)
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _scalar_int(buf: bytes, span: tuple[int, int]) -> int | None:
    """The value of a one-element integer TensorProto (INT32 = 6 or INT64 = 7), else None."""
    dims, dtype, raw, ints = [], 0, None, []
    for f, v in _fields(buf, *span):
        if f == 1:
            dims.append(v) if isinstance(v, int) else dims.extend(_packed(buf, v))
        elif f == 2:
            dtype = v
        elif f == 9:
            raw = bytes(buf[v[0]:v[1]])
        elif f in (5, 7):
            ints.extend([v] if isinstance(v, int) else _packed(buf, v))
    if dtype not in (6, 7) or int(np.prod(dims or [1])) != 1:
        return None
    if raw is not None:
        return int(np.frombuffer(raw, "<i8" if dtype == 7 else "<i4")[0])
    return ints[0] if ints else None


def _packed(buf: bytes, span: tuple[int, int]) -> list[int]:
    out, i = [], span[0]
    while i < span[1]:
        v, i = _varint(buf, i)
        out.append(v)
    return out


def _text(buf: bytes, span: tuple[int, int]) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


def labels_class_count(model_bytes: bytes) -> int | None:
    """The divisor of the ``labels`` output's ``mod``: ``Mod(index, C)`` or, as torch exports
    ``a - a // b * b``, ``Sub(index, Mul(Div(index, C), C))``. None when the graph has neither."""
    buf = memoryview(model_bytes)
    graph = next((v for f, v in _fields(buf, 0, len(buf)) if f == 7), None)
    if graph is None:
        return None
    producer: dict[str, tuple[str, list[str]]] = {}
    constants: dict[str, tuple[int, int]] = {}
    for f, v in _fields(buf, *graph):
        if f == 5:  # initializer
            name = next((_text(buf, s) for g, s in _fields(buf, *v) if g == 8), "")
            constants[name] = v
        elif f == 1:  # node
            ins, outs, op, tensor = [], [], "", None
            for g, s in _fields(buf, *v):
                if g == 1:
                    ins.append(_text(buf, s))
                elif g == 2:
                    outs.append(_text(buf, s))
                elif g == 4:
                    op = _text(buf, s)
                elif g == 5:  # attribute: a Constant node's value tensor is field t (5)
                    tensor = next((t for h, t in _fields(buf, *s) if h == 5), tensor)
            for o in outs:
                producer[o] = (op, ins)
            if op == "Constant" and tensor is not None and outs:
                constants[outs[0]] = tensor

    def const(name: str) -> int | None:
        return _scalar_int(buf, constants[name]) if name in constants else None

    op, ins = producer.get("labels", ("", []))
    if op == "Cast" and ins:
        op, ins = producer.get(ins[0], ("", []))
    if op == "Mod" and len(ins) == 2:
        return const(ins[1])
    if op == "Sub" and len(ins) == 2:
        mul_op, mul_in = producer.get(ins[1], ("", []))
        if mul_op == "Mul":
            for name in mul_in:
                c = const(name)
                if c is not None and c > 0:
                    return c
    return None
