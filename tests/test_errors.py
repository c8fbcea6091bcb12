from nnef_tvm.errors import NNEFError, SourcePos


def test_single_error_renders_location():
    e = NNEFError("expected ';'", SourcePos("graph.nnef", 3, 7))
    assert str(e) == "graph.nnef:3:7: error: expected ';'"
    assert e.errors == [e]


def test_binary_offset_renders():
    e = NNEFError("bad magic", SourcePos("w.dat", offset=1))
    assert str(e) == "w.dat (byte 1): error: bad magic"


def test_collect_flattens_and_keeps_order():
    a = NNEFError("a", SourcePos("f", 1, 1))
    b = NNEFError("b", SourcePos("f", 2, 1))
    c = NNEFError.collect([a, NNEFError.collect([b])])
    assert [x.message for x in c.errors] == ["a", "b"]
    assert str(c).splitlines() == ["f:1:1: error: a", "f:2:1: error: b"]


def test_with_file_fills_missing_file_only():
    e = NNEFError.collect([NNEFError("x", SourcePos(None, 1, 2)), NNEFError("y", SourcePos("q", 1, 1))])
    f = e.with_file("graph.nnef")
    assert [x.pos.file for x in f.errors] == ["graph.nnef", "q"]
