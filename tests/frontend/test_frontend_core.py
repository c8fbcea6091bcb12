"""Frontend core: driver, context, interface of ``main``, unsupported-op reporting."""
import numpy as np
import pytest

from nnef_tvm.errors import NNEFError, SourcePos
from nnef_tvm.frontend import check_supported, from_nnef
from nnef_tvm.reader.graph import Graph, Identifier, Operation, Tensor

from frontend.support_frontend import graph_of, rand, run_graph, run_module

TEXT = """version 1.0;
graph G( x, y ) -> ( z, w )
{
    x = external(shape = [2, 3, 4, 5]);
    y = external(shape = [1, 3]);
    c = constant(shape = [1, 3], value = [1.0, -2.0, 3.0]);
    v = variable(shape = [2, 3], label = 'v');
    z = relu(add(x, y));
    w = add(add(c, v), 1.0);
}
"""


def test_relu_add_left_aligned_broadcast_and_constants():
    # [1,3] + [2,3,4,5] aligns on the LEFT: y is a per-channel bias
    x, y = rand((2, 3, 4, 5), 1), rand((1, 3), 2)
    v = rand((2, 3), 3)
    z, w = run_graph(graph_of(TEXT, {"v": v}), {"x": x, "y": y})
    np.testing.assert_allclose(z, np.maximum(x + y.reshape(1, 3, 1, 1), 0), rtol=1e-6)
    np.testing.assert_allclose(w, np.array([[1.0, -2.0, 3.0]]) + v + 1.0, rtol=1e-6)


def test_keep_params_makes_variables_parameters():
    v = rand((2, 3), 3)
    g = graph_of(TEXT, {"v": v})
    mod, params = from_nnef(g, keep_params=True)
    assert list(params) == ["v"]
    np.testing.assert_array_equal(params["v"], v)
    main = mod["main"]
    assert [str(p.name) for p in main.params] == ["x", "y", "v"]
    assert list(main.attrs["nnef_input_names"]) == ["x", "y"]
    assert list(main.attrs["nnef_param_names"]) == ["v"]
    x, y = rand((2, 3, 4, 5), 1), rand((1, 3), 2)
    v2 = rand((2, 3), 9)  # feed a different value: the parameter really is used
    _, w = run_module(mod, [x, y, v2])
    np.testing.assert_allclose(w, np.array([[1.0, -2.0, 3.0]]) + v2 + 1.0, rtol=1e-6)


def test_bound_variables_are_constants():
    mod = from_nnef(graph_of(TEXT, {"v": rand((2, 3), 3)}))
    assert [str(p.name) for p in mod["main"].params] == ["x", "y"]
    assert list(mod["main"].attrs["nnef_output_names"]) == ["z", "w"]


def test_variable_without_data_is_a_located_error():
    with pytest.raises(NNEFError, match="no data"):
        from_nnef(graph_of(TEXT))


def test_check_supported_lists_every_unsupported_use():
    t = {n: Tensor(n, shape=(1, 2)) for n in "xabc"}
    ops = [
        Operation("external", outputs={"output": Identifier("x")}, attribs={"shape": [1, 2]}),
        Operation("frobnicate", inputs={"x": Identifier("x")}, outputs={"y": Identifier("a")},
                  pos=SourcePos("g.nnef", 3, 5)),
        Operation("relu", inputs={"x": Identifier("a")}, outputs={"y": Identifier("b")},
                  pos=SourcePos("g.nnef", 4, 5)),
        Operation("wibble", inputs={"x": Identifier("b")}, outputs={"y": Identifier("c")},
                  pos=SourcePos("g.nnef", 5, 9)),
    ]
    g = Graph("G", ["x"], ["c"], ops, t)
    with pytest.raises(NNEFError) as info:
        check_supported(g)
    errs = info.value.errors
    assert len(errs) == 2
    assert "frobnicate" in errs[0].message and errs[0].line == 3 and errs[0].column == 5
    assert "wibble" in errs[1].message and errs[1].line == 5
    # from_nnef checks before converting anything
    with pytest.raises(NNEFError) as info2:
        from_nnef(g)
    assert len(info2.value.errors) == 2


def test_update_returns_next_value_as_extra_output():
    text = """version 1.0;
graph G( x ) -> ( y )
{
    x = external(shape = [2]);
    a = variable(shape = [2], label = 'a');
    b = variable(shape = [2], label = 'b');
    y = add(x, a);
    a1 = update(a, b);
    b1 = update(b, a);
}
"""
    a, b, x = np.array([1, 2], "float32"), np.array([10, 20], "float32"), rand((2,), 4)
    g = graph_of(text, {"a": a, "b": b})
    mod, params = from_nnef(g, keep_params=True)
    assert dict(mod["main"].attrs["nnef_updates"]) == {"a": 1, "b": 2}
    y, a_next, b_next = run_module(mod, [x, params["a"], params["b"]])
    np.testing.assert_allclose(y, x + a)          # readers see the old value
    np.testing.assert_array_equal(a_next, b)      # swap semantics
    np.testing.assert_array_equal(b_next, a)


def test_machine_types_float16_and_int64():
    text = """version 1.0;
graph G( x, i ) -> ( y, j, b, k )
{
    x = external(shape = [2, 3]);
    i = external<integer>(shape = [2]);
    y = mul(add(x, 1.5), x);
    f = cast<scalar>(i);
    j = select(lt(f, 1.0), i, 7);
    b = gt(x, 0.0);
    k = argmax_reduce(x, axes = [1]);
}
"""
    x = rand((2, 3), 5, dtype="float16")
    i = np.array([0, 3], "int64")
    y, j, b, k = run_graph(graph_of(text), {"x": x, "i": i}, dtype="float16", int_dtype="int64")
    assert y.dtype == np.float16 and j.dtype == np.int64 and b.dtype == np.bool_
    assert k.dtype == np.int64
    np.testing.assert_allclose(y, (x.astype(np.float32) + 1.5) * x, rtol=2e-3)
    np.testing.assert_array_equal(j, [0, 7])
    np.testing.assert_array_equal(k[:, 0], x.argmax(1))


def test_degenerate_attributes_and_constant_fill():
    text = """version 1.0;
graph G( x ) -> ( s, sm, am, mv, c, cf, ci, cl )
{
    x = external(shape = [2, 3]);
    s = sum_reduce(x, axes = []);
    sm = softmax(x, axes = []);
    am = argmax_reduce(x, axes = []);
    m, mv = moments(x, axes = []);
    c = constant(shape = [2, 2], value = [1.0, 2.0, 3.0, 4.0]);
    cf = constant(shape = [2, 3], value = [0.5]);
    ci = constant<integer>(shape = [3], value = [1, -2, 3]);
    cl = constant<logical>(shape = [2], value = [true, false]);
}
"""
    x = rand((2, 3), 6)
    s, sm, am, mv, c, cf, ci, cl = run_graph(graph_of(text), {"x": x})
    np.testing.assert_array_equal(s, x)                 # reducing no axis is the identity
    np.testing.assert_array_equal(sm, np.ones_like(x))  # exp(x - x) / exp(x - x)
    np.testing.assert_array_equal(am, np.zeros((2, 3), np.int32))
    np.testing.assert_array_equal(mv, np.zeros_like(x))
    np.testing.assert_array_equal(c, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(cf, np.full((2, 3), 0.5))
    np.testing.assert_array_equal(ci, [1, -2, 3])
    assert ci.dtype == np.int32
    np.testing.assert_array_equal(cl, [True, False])


def test_converter_user_errors_are_located():
    g = graph_of("""version 1.0;
graph G( x ) -> ( y )
{
    x = external(shape = [2, 3]);
    y = pad(x, padding = [(0, 0), (1, 1)], border = 'replicate');
}
""")
    pad_op = g.operations[-1]
    pad_op.attribs["border"] = "ignore"   # the Khronos parser lets it through
    pad_op.pos = SourcePos("graph.nnef", 5, 9)
    with pytest.raises(NNEFError, match="ignore") as info:
        from_nnef(g)
    assert info.value.line == 5


def test_graph_without_shapes_is_shaped_on_a_copy():
    g = graph_of(TEXT, {"v": rand((2, 3), 3)}, infer_shapes=False)
    assert g.tensors["z"].shape is None
    mod = from_nnef(g)
    assert g.tensors["z"].shape is None
    assert [int(s) for s in mod["main"].params[0].ty.shape.values] == [2, 3, 4, 5]


def test_converter_bug_names_the_operation(monkeypatch):
    from nnef_tvm.frontend import registry
    registry._load_all()

    def broken(ctx, op):
        raise ZeroDivisionError("boom")
    monkeypatch.setitem(registry._CONVERTERS, "relu", broken)
    g = graph_of(TEXT, {"v": rand((2, 3), 3)})
    g.operations[-3].pos = SourcePos("graph.nnef", 8, 9)   # relu(add(x, y))
    assert g.operations[-3].name == "relu"
    with pytest.raises(ZeroDivisionError) as info:
        from_nnef(g)
    assert any("'relu' at graph.nnef:8:9" in n for n in info.value.__notes__)
