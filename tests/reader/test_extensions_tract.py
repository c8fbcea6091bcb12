"""Reader side of the opt-in 'tract' extension set (nnef_tvm/reader/extensions.py).

Documents are hand-written in the style of torch-to-nnef output: an
``extension tract_registry tract_core;`` line, the metadata fragment
``tract_core_properties()`` with an empty parameter list, inputs declared with
``tract_core_external`` and a GELU fragment built on ``tract_core_erf``.
"""
import pytest

import nnef_tvm
from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import semantics, syntax

TRACT_DOC = """version 1.0;

extension tract_registry tract_core;

fragment tract_core_properties(
) -> (properties: (string, tensor<scalar>)[])
{
  properties = [("tract_nnef_ser_version", "0.21.6"), ("tract_nnef_format_version", "beta1")];
}

fragment gelu_erf( x: tensor<scalar> ) -> ( y: tensor<scalar> )
{
  y = 0.5 * x * (1.0 + tract_core_erf(x / sqrt(2.0)));
}

graph net( input_0, idx ) -> ( out_gelu, out_g, out_c, out_p, out_amax )
{
  input_0 = tract_core_external(shape = [2, 5], datum_type = 'f32');
  idx = tract_core_external(shape = [3], datum_type = 'i64');
  out_gelu = gelu_erf(input_0);
  out_g = tract_core_gather(input_0, indices = idx, axis = -1);
  out_c = tract_core_cast(input_0, to = 'i32');
  out_p = tract_core_product_reduce(input_0, axes = [0]);
  out_amax = tract_core_argmax_reduce_last(input_0, axes = [1]);
}
"""


def _write(tmp_path, text=TRACT_DOC):
    p = tmp_path / "graph.nnef"
    p.write_text(text)
    return p


def test_tract_document_loads_with_option(tmp_path):
    m = nnef_tvm.load(_write(tmp_path), extensions=("tract",))
    g = m.graph
    ops = [op.name for op in g.operations]
    assert ops.count("external") == 2
    assert "tract_core_erf" in ops          # gelu_erf lowered, erf stays atomic
    assert "gelu_erf" not in ops
    t = g.tensors
    assert (t["input_0"].dtype, t["input_0"].shape) == ("scalar", (2, 5))
    assert (t["idx"].dtype, t["idx"].shape) == ("integer", (3,))
    assert t["out_g"].shape == (2, 3)
    assert (t["out_c"].dtype, t["out_c"].shape) == ("integer", (2, 5))
    assert t["out_p"].shape == (1, 5)
    assert (t["out_amax"].dtype, t["out_amax"].shape) == ("integer", (2, 1))
    assert m.extensions == ["tract_registry", "tract_core"]


def test_tract_document_rejected_without_option(tmp_path):
    with pytest.raises(NNEFError) as e:
        nnef_tvm.load(_write(tmp_path))
    msg = str(e.value)
    assert "tract_registry" in msg and "--extensions tract" in msg
    assert ":3:" in msg                      # points at the extension line


def test_build_graph_rejects_tract_names_without_option():
    text = TRACT_DOC.replace(TRACT_DOC[TRACT_DOC.index("fragment tract_core_properties"):
                                       TRACT_DOC.index("fragment gelu_erf")], "")
    doc = syntax.parse(text)
    errors = semantics.check(doc)
    assert any("--extensions tract" in str(e) for e in errors)
    graph, _ = semantics.build_graph(doc, extensions=("tract",))
    assert graph.tensors["out_g"].dtype == "scalar"


def test_tract_core_ops_unknown_without_option_even_if_extension_omitted():
    text = ("version 1.0;\ngraph g( x ) -> ( y )\n{\n  x = external(shape = [2]);\n"
            "  y = tract_core_erf(x);\n}\n")
    with pytest.raises(NNEFError):
        semantics.build_graph(syntax.parse(text))
    graph, _ = semantics.build_graph(syntax.parse(text), extensions=("tract",))
    assert [op.name for op in graph.operations] == ["external", "tract_core_erf"]


def test_bad_datum_type_and_gather_axis_are_located(tmp_path):
    bad = TRACT_DOC.replace("datum_type = 'i64'", "datum_type = 'q7'")
    with pytest.raises(NNEFError, match="datum_type 'q7'"):
        nnef_tvm.load(_write(tmp_path, bad), extensions=("tract",))
    bad = TRACT_DOC.replace("axis = -1", "axis = 2")
    with pytest.raises(NNEFError, match="axis 2 out of range") as e:
        nnef_tvm.load(_write(tmp_path, bad), extensions=("tract",))
    assert "graph.nnef" in str(e.value)


def test_unknown_extension_set_name_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown extension set"):
        nnef_tvm.load(_write(tmp_path), extensions=("onnx",))


def test_cli_check_with_and_without_extensions_flag(tmp_path, capsys):
    from nnef_tvm.cli.compile import main
    p = str(_write(tmp_path))
    assert main([p, "--check", "--extensions", "tract"]) == 0
    assert "graph net: OK" in capsys.readouterr().out
    assert main([p, "--check"]) != 0
    assert "--extensions tract" in capsys.readouterr().err
    assert main([p, "--check", "--extensions", "bogus"]) != 0
    assert "unknown extension set 'bogus'" in capsys.readouterr().err
