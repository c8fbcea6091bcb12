"""from_nnef on a Model with its document: compounds without a converter are lowered
through their fragment bodies; input_shapes overrides; paths."""
import numpy as np
import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.frontend import from_nnef, registry
from nnef_tvm.reader import semantics, syntax
from nnef_tvm.reader.graph import Model
from nnef_tvm.reader.shapes import infer_shapes

from frontend.support_frontend import ensure_stdlib, rand, run_module

_HAVE_STDLIB = ensure_stdlib()

pytestmark = pytest.mark.skipif(not _HAVE_STDLIB, reason="reader stdlib.nnef not landed yet")

TEXT = """version 1.0;
extension KHR_enable_fragment_definitions;

fragment shifted_relu( x: tensor<scalar>, s: scalar ) -> ( y: tensor<scalar> )
{
    t = add(x, s);
    y = relu(t);
}

graph G( x ) -> ( y, z )
{
    x = external(shape = [2, 3]);
    y = shifted_relu(x, s = 0.5);
    z = softplus(x);
}
"""


def _model(text, lower, shapes=True):
    doc = syntax.parse(text, file="graph.nnef")
    graph, fragments = semantics.build_graph(doc, lower=lower)
    if shapes:
        infer_shapes(graph)
    return Model(graph=graph, fragments=fragments, document=doc)


@pytest.fixture
def without_softplus(monkeypatch):
    registry._load_all()
    monkeypatch.delitem(registry._CONVERTERS, "softplus")


def test_custom_fragment_is_lowered_when_graph_kept_it_atomic():
    # nothing expanded by the reader (an atomic custom op has no shape function either)
    model = _model(TEXT, lower=set(), shapes=False)
    assert "shifted_relu" in [op.name for op in model.graph.operations]
    x = rand((2, 3), 1)
    y, z = run_module(from_nnef(model), [x])
    np.testing.assert_allclose(y, np.maximum(x + 0.5, 0), rtol=1e-6)
    np.testing.assert_allclose(z, np.log(np.exp(x) + 1), rtol=1e-5)


def test_standard_compound_without_converter_goes_through_its_body(without_softplus):
    model = _model(TEXT, lower=None)
    mod = from_nnef(model)
    # the body of softplus is log(exp(x) + 1): no softplus call survives, numbers agree
    text = mod.script()
    assert "R.exp" in text and "R.log" in text
    x = rand((2, 3), 2)
    _, z = run_module(mod, [x])
    np.testing.assert_allclose(z, np.log(np.exp(x) + 1), rtol=1e-5)


def test_graph_without_document_reports_unsupported_compound(without_softplus):
    model = _model(TEXT, lower=None)
    with pytest.raises(NNEFError, match="softplus") as info:
        from_nnef(model.graph)                  # a bare Graph cannot be re-lowered
    assert info.value.line == 14


def test_input_shapes_override_does_not_touch_the_callers_graph():
    model = _model(TEXT, lower=None)
    mod = from_nnef(model, input_shapes={"x": [4, 3]})
    assert model.graph.tensors["x"].shape == (2, 3)
    x = rand((4, 3), 3)
    y, _ = run_module(mod, [x])
    np.testing.assert_allclose(y, np.maximum(x + 0.5, 0), rtol=1e-6)


def test_from_path(tmp_path):
    (tmp_path / "graph.nnef").write_text(TEXT)
    mod = from_nnef(str(tmp_path / "graph.nnef"))
    assert [str(p.name) for p in mod["main"].params] == ["x"]
