"""Property tests: shapes of layout, broadcast, reduction and window ops vs NumPy / brute force.

NumPy is an independent reference where NNEF and NumPy agree on meaning:
left-aligned NNEF broadcasting is NumPy broadcasting on reversed shapes; NNEF
``transpose(axes)`` is NumPy ``transpose(axes + rest)``; ``unsqueeze`` axes index
the output like ``numpy.expand_dims``; reductions are ``keepdims=True``; ``tile``,
``pad`` (non-negative), ``split`` (cut points from the ratios), ``concat``,
``stack``, ``gather`` (``take``) and ``slice`` (Python slicing after NNEF's
normalization) follow directly. Window extents are checked against a brute-force
count of window positions that fit inside the padded input.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader.graph import Graph, Identifier, Operation, Tensor
from nnef_tvm.reader.shapes import infer_shapes

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)
extent = st.integers(1, 5)
shape = st.lists(extent, min_size=0, max_size=5).map(tuple)
shape1 = st.lists(extent, min_size=1, max_size=5).map(tuple)


def run(name, inputs: dict, attribs: dict, outputs=("y",)):
    """Infer the shapes of one op whose tensor inputs are externals of the given shapes."""
    ops, values, tensors = [], {}, []
    for i, (param, s) in enumerate(inputs.items()):
        if isinstance(s, list):  # tensor array
            ids = []
            for k, sk in enumerate(s):
                n = f"in{i}_{k}"
                ops.append(Operation("external", outputs={"output": Identifier(n)}, attribs={"shape": list(sk)}))
                ids.append(Identifier(n))
                tensors.append(n)
            values[param] = ids
        else:
            n = f"in{i}"
            ops.append(Operation("external", outputs={"output": Identifier(n)}, attribs={"shape": list(s)}))
            values[param] = Identifier(n)
            tensors.append(n)
    outs = {}
    for o in outputs:
        if isinstance(o, tuple):  # (result name, count) for array results
            outs[o[0]] = [Identifier(f"{o[0]}{k}") for k in range(o[1])]
            tensors += [str(x) for x in outs[o[0]]]
        else:
            outs[o] = Identifier(o)
            tensors.append(o)
    ops.append(Operation(name, inputs=values, outputs=outs, attribs=attribs))
    g = Graph("G", [], [], ops, {n: Tensor(n) for n in tensors})
    infer_shapes(g)
    result = []
    for o in outputs:
        if isinstance(o, tuple):
            result.append([g.tensors[str(x)].shape for x in outs[o[0]]])
        else:
            result.append(g.tensors[o].shape)
    return result[0] if len(result) == 1 else result


def left_broadcast(a, b):
    """NNEF broadcasting through NumPy: reverse, broadcast right-aligned, reverse back."""
    return tuple(reversed(np.broadcast_shapes(tuple(reversed(a)), tuple(reversed(b)))))


@SETTINGS
@given(a=shape, data=st.data())
def test_binary_broadcast_is_numpy_on_reversed_shapes(a, data):
    # b: a prefix-compatible variation of a (some extents replaced by 1, some trailing axes added)
    b = tuple(data.draw(st.sampled_from([e, 1])) for e in a[:data.draw(st.integers(0, len(a)))])
    b += tuple(data.draw(st.lists(extent, max_size=2)))
    try:
        expected = left_broadcast(a, b)
    except ValueError:
        with pytest.raises(NNEFError, match=r"error: add: cannot broadcast"):
            run("add", {"x": a, "y": b}, {})
        return
    assert run("add", {"x": a, "y": b}, {}) == expected
    assert run("select", {"condition": b, "true_value": a, "false_value": a}, {}, ("output",)) == expected


@SETTINGS
@given(x=shape1, data=st.data())
def test_transpose_is_numpy_transpose_of_leading_axes(x, data):
    n = data.draw(st.integers(0, len(x)))
    axes = data.draw(st.permutations(list(range(n))))
    full = list(axes) + list(range(n, len(x)))
    assert run("transpose", {"input": x}, {"axes": list(axes)}, ("output",)) == np.zeros(x).transpose(full).shape


@SETTINGS
@given(x=shape, data=st.data())
def test_unsqueeze_is_expand_dims(x, data):
    k = data.draw(st.integers(0, 3))
    axes = data.draw(st.lists(st.integers(0, len(x) + k - 1), min_size=k, max_size=k, unique=True)) if k else []
    expected = np.expand_dims(np.zeros(x), tuple(axes)).shape if axes else x
    assert run("unsqueeze", {"input": x}, {"axes": axes}, ("output",)) == expected


@SETTINGS
@given(x=shape1, data=st.data())
def test_squeeze_is_numpy_squeeze(x, data):
    x = tuple(data.draw(st.sampled_from([e, 1])) for e in x)
    ones = [i for i, e in enumerate(x) if e == 1]
    axes = data.draw(st.lists(st.sampled_from(ones), unique=True)) if ones else []
    expected = np.squeeze(np.zeros(x), tuple(axes)).shape if axes else x
    assert run("squeeze", {"input": x}, {"axes": axes}, ("output",)) == expected


@SETTINGS
@given(x=shape1, data=st.data())
def test_reductions_keep_dims(x, data):
    axes = data.draw(st.lists(st.integers(0, len(x) - 1), unique=True))
    expected = np.sum(np.zeros(x), axis=tuple(axes), keepdims=True).shape
    for name in ("sum_reduce", "argmax_reduce"):
        assert run(name, {"input": x}, {"axes": axes}, ("output",)) == expected
    assert run("moments", {"input": x}, {"axes": axes}, ("mean", "variance")) == [expected, expected]


@SETTINGS
@given(x=shape1, data=st.data())
def test_reshape_with_zero_and_minus_one_is_numpy_reshape(x, data):
    start = data.draw(st.integers(0, len(x)))
    count = data.draw(st.integers(0, len(x) - start))
    segment = x[start:start + count]
    # a random factorization of the segment's volume, with some entries replaced by 0 / -1
    factors = []
    for e in segment:
        factors += data.draw(st.sampled_from([[e], [1, e]] + ([[2, e // 2]] if e % 2 == 0 else [])))
    new = list(factors)
    for k in range(min(len(new), count)):
        if new[k] == segment[k] and data.draw(st.booleans()):
            new[k] = 0
    if new and data.draw(st.booleans()):
        new[data.draw(st.integers(0, len(new) - 1))] = -1
    numpy_target = [segment[k] if v == 0 else v for k, v in enumerate(new)]
    expected = x[:start] + np.zeros(segment).reshape(numpy_target).shape + x[start + count:]
    got = run("reshape", {"input": x}, {"shape": new, "axis_start": start, "axis_count": count}, ("output",))
    assert got == expected


@SETTINGS
@given(x=shape1, data=st.data())
def test_tile_pad_gather_are_numpy(x, data):
    reps = data.draw(st.lists(st.integers(1, 3), min_size=len(x), max_size=len(x)))
    assert run("tile", {"input": x}, {"repeats": reps}, ("output",)) == np.tile(np.zeros(x), reps).shape
    pads = data.draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=len(x), max_size=len(x)))
    assert run("pad", {"input": x}, {"padding": pads, "border": "constant", "value": 0.0},
               ("output",)) == np.pad(np.zeros(x), pads).shape
    axis = data.draw(st.integers(0, len(x) - 1))
    idx = data.draw(shape)
    indices = np.zeros(idx, dtype=int)
    assert run("gather", {"input": x, "indices": idx}, {"axis": axis}, ("output",)) == \
        np.take(np.zeros(x), indices, axis=axis).shape


@SETTINGS
@given(x=shape1, data=st.data())
def test_split_concat_stack_unstack_are_numpy(x, data):
    axis = data.draw(st.integers(0, len(x) - 1))
    ratios = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    x = x[:axis] + (sum(ratios) * data.draw(st.integers(1, 2)),) + x[axis + 1:]
    unit = x[axis] // sum(ratios)
    cuts = list(itertools.accumulate(r * unit for r in ratios))[:-1]
    expected = [p.shape for p in np.split(np.zeros(x), cuts, axis=axis)]
    parts = run("split", {"value": x}, {"axis": axis, "ratios": ratios}, (("values", len(ratios)),))
    assert parts == expected
    assert run("concat", {"values": parts}, {"axis": axis}, ("value",)) == x
    k = data.draw(st.integers(1, 3))
    axis2 = data.draw(st.integers(0, len(x)))
    assert run("stack", {"values": [x] * k}, {"axis": axis2}, ("value",)) == \
        np.stack([np.zeros(x)] * k, axis=axis2).shape
    assert run("unstack", {"value": x}, {"axis": axis}, (("values", x[axis]),)) == \
        [p.shape for p in np.moveaxis(np.zeros(x), axis, 0)]


@SETTINGS
@given(n=st.integers(1, 9), b=st.integers(-12, 12), e=st.integers(-12, 12),
       s=st.integers(-4, 4).filter(lambda v: v != 0))
def test_slice_extent_is_python_slicing(n, b, e, s):
    """Reference: NNEF's normalization (spec), then the element count of range(begin, end, stride)."""
    if e == 0 and s == 1:
        e = n  # deprecated legacy rule
    nb = max(-1, min(n, b + n if b < 0 else b))
    ne = max(-1, min(n, e + n if e < 0 else e))
    valid = (0 <= nb <= ne) if s > 0 else (ne <= nb < n)
    count = len(range(nb, ne, s))
    attribs = {"axes": [0], "begin": [b], "end": [e], "stride": [s]}
    if not valid or count == 0:
        with pytest.raises(NNEFError, match=r"error: slice: "):
            run("slice", {"input": (n,)}, attribs, ("output",))
    else:
        assert run("slice", {"input": (n,)}, attribs, ("output",)) == (count,)
        # and the elements picked agree with NumPy's slicing (end -1 means "past index 0")
        picked = np.arange(n)[nb:(None if ne < 0 else ne):s]
        assert len(picked) == count


@SETTINGS
@given(batch=st.lists(st.integers(1, 3), max_size=3), m=extent, k=extent, n=extent,
       ta=st.booleans(), tb=st.booleans(), data=st.data())
def test_matmul_is_numpy_matmul(batch, m, k, n, ta, tb, data):
    batch_b = [data.draw(st.sampled_from([e, 1])) for e in batch]
    batch_a = [1 if bb != 1 and data.draw(st.booleans()) else e for e, bb in zip(batch, batch_b)]
    a = tuple(batch_a) + ((k, m) if ta else (m, k))
    b = tuple(batch_b) + ((n, k) if tb else (k, n))
    za, zb = np.zeros(a), np.zeros(b)
    expected = np.matmul(np.swapaxes(za, -1, -2) if ta else za, np.swapaxes(zb, -1, -2) if tb else zb).shape
    assert run("matmul", {"A": a, "B": b}, {"transposeA": ta, "transposeB": tb}, ("C",)) == expected


@SETTINGS
@given(X=st.integers(1, 12), f=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 3),
       p=st.integers(-1, 4), q=st.integers(-1, 4))
def test_window_extent_is_the_number_of_fitting_positions(X, f, s, d, p, q):
    fd = (f - 1) * d + 1
    # brute force: output position i covers padded cells [i*s, i*s + fd) of p + X + q
    positions = sum(1 for i in range(0, 100) if i * s + fd <= p + X + q)
    attribs = {"size": [1, f], "padding": [(0, 0), (p, q)], "stride": [1, s], "dilation": [1, d],
               "border": "constant"}
    if positions == 0:
        with pytest.raises(NNEFError, match=r"error: box: window of extent"):
            run("box", {"input": (2, X)}, attribs, ("output",))
        return
    assert run("box", {"input": (2, X)}, attribs, ("output",)) == (2, positions)
    # the reverse op with output_shape = X recovers X exactly
    assert run("debox", {"input": (2, positions)}, {**attribs, "output_shape": [2, X]}, ("output",)) == (2, X)
    # automatic padding: ceil(X / s) outputs, and the reverse gives x * s
    auto = {**attribs, "padding": []}
    assert run("box", {"input": (2, X)}, auto, ("output",)) == (2, -(-X // s))
    assert run("debox", {"input": (2, X)}, auto, ("output",)) == (2, X * s)
