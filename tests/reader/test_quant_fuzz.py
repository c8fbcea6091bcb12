"""Property tests: any graph.quant text either parses or raises a located NNEFError."""
from hypothesis import given, settings
from hypothesis import strategies as st

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader.quant import parse_quant

PIECES = ['"x"', "'y'", ":", "linear_quantize", "zero_point_linear_quantize", "min_max_linear_quantize",
          "logarithmic_quantize", "(", ")", "[", "]", ",", ";", "=", "min", "max", "bits", "scale",
          "zero_point", "signed", "symmetric", "true", "false", "1", "-2", "0.5", "-1e3", "#c\n", "\n", " ",
          "x", "@", "-", "*"]

VALID = '"x": min_max_linear_quantize(min = [0.0, -1.0], max = [[1.0, 2.0]], bits = 8, signed = true, symmetric = false);\n'


def _check(text):
    try:
        parse_quant(text, file="f.quant")
    except NNEFError as e:
        for err in e.errors:
            assert err.file == "f.quant" and err.line is not None and err.column is not None


@settings(max_examples=300, deadline=500)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_quant_fuzz_token_soup(pieces):
    _check(" ".join(pieces))


@settings(max_examples=200, deadline=500)
@given(st.integers(0, len(VALID)), st.integers(0, 5), st.text(max_size=6))
def test_quant_fuzz_edited_valid_entry(at, cut, insert):
    _check(VALID[:at] + insert + VALID[at + cut:])


def test_quant_fuzz_deep_nesting_is_an_error_not_a_crash():
    text = '"x": linear_quantize(min = ' + "[" * 3000 + "1.0" + "]" * 3000 + ", max = 1.0, bits = 8);"
    _check(text)
