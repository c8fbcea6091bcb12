"""Differential tests: our semantic layer vs the Khronos parser (``nnef`` 1.0.10, test oracle only).

For every shared example and for many generated documents (random flat graphs
over most standard operations with random attributes, random operator
expressions, attribute expressions that need compile-time folding, and random
lowering sets) both readers must give the same verdict and, when accepted, the
same operation sequence: names, inputs (identifiers and literal operands),
outputs (including Khronos-style fresh names like ``mul1``), attributes and
generic dtype. Where Khronos has documented bugs (SPEC-NOTES §9: E1 unary minus
precedence, E3 logical tensor operators, E5 string subscripts/ranges, E11
``y = x``), the generators avoid them and dedicated tests assert the spec's
answer explicitly.
"""
from __future__ import annotations

import math
import pathlib
import random
import re

import pytest

from nnef_tvm.errors import NNEFError
from nnef_tvm.reader import semantics, stdlib, syntax

khronos = pytest.importorskip("nnef")

SHARED = pathlib.Path("/work/shared/nnef")
EXAMPLES = SHARED / "examples"


def compounds() -> list[str]:
    return sorted(n for n, f in stdlib.standard_fragments().items() if f.body is not None)


# ------------------------------------------------------------ comparison --
def _norm(v):
    """Comparable form of an operand/attribute (floats rounded to float32 precision like Khronos)."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int):
        return ("i", v)
    if isinstance(v, float):
        return ("f", "nan") if math.isnan(v) else ("f", float(f"{v:.6g}"))
    if isinstance(v, str):
        return ("s", str(v))
    if isinstance(v, list):
        return ("l", tuple(_norm(x) for x in v))
    if isinstance(v, tuple):
        return ("t", tuple(_norm(x) for x in v))
    if v is None:
        return ("n",)
    raise TypeError(type(v))


def _op_key(op):
    return (op.name, {k: _norm(v) for k, v in op.inputs.items()},
            {k: _norm(v) for k, v in op.outputs.items()},
            {k: _norm(v) for k, v in op.attribs.items()}, op.dtype)


def ours(text, lowered=()):
    doc = syntax.parse(text, "gen.nnef")
    g, _ = semantics.build_graph(doc, lower=set(lowered))
    return g


def theirs(text, lowered=()):
    return khronos.parse_string(text, lowered=list(lowered))


def compare(text, lowered=()):
    """Assert same verdict and same operations; returns the verdict (True = accepted)."""
    try:
        kg = theirs(text, lowered)
    except Exception as e:  # noqa: BLE001 - the oracle raises its own error type
        kerr = e
    else:
        kerr = None
    try:
        g = ours(text, lowered)
    except NNEFError as e:
        if kerr is None:
            pytest.fail(f"we reject, Khronos accepts:\n{text}\nour error: {e}")
        return False
    if kerr is not None:
        pytest.fail(f"we accept, Khronos rejects:\n{text}\nKhronos: {kerr}")
    mine = [_op_key(op) for op in g.operations]
    ref = [_op_key(op) for op in kg.operations]
    if mine != ref:
        lines = [f"lowered={sorted(lowered)}", text]
        for k, (a, b) in enumerate(zip(mine, ref)):
            if a != b:
                lines.append(f"first difference at op {k}:\n ours   {a}\n khronos {b}")
                break
        else:
            lines.append(f"lengths differ: {len(mine)} vs {len(ref)}")
        pytest.fail("\n".join(lines))
    # every tensor gets the same dtype
    kt = {name: t.dtype for name, t in kg.tensors.items()}
    assert {n: t.dtype for n, t in g.tensors.items()} == kt
    assert list(g.inputs) == list(kg.inputs) and list(g.outputs) == list(kg.outputs)
    return True


# ------------------------------------------------------------- examples --
KHRONOS_OK = ["01_flat_small_cnn.nnef", "02_flat_shape_and_logic.nnef", "03_fragments_generics.nnef",
              "04_operator_expressions.nnef", "05_comprehension_ifelse.nnef",
              "07_tensor_array_results.nnef", "06_quantized/graph.nnef"]


@pytest.mark.parametrize("name", KHRONOS_OK)
@pytest.mark.parametrize("lowering", ["none", "custom", "all"])
def test_examples_match_khronos(name, lowering):
    text = (EXAMPLES / name).read_text()
    doc = syntax.parse(text, name)
    custom = [f.name for f in doc.fragments if f.body is not None]
    lowered = {"none": [], "custom": custom, "all": custom + compounds()}[lowering]
    assert compare(text, lowered)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("i0*.nnef")))
def test_invalid_examples_rejected_by_both(name):
    assert compare((EXAMPLES / name).read_text()) is False


# ------------------------------------------------------------ generators --
UNARY = ["copy", "neg", "rcp", "exp", "log", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
         "cosh", "tanh", "asinh", "acosh", "atanh", "abs", "sign", "floor", "ceil", "round", "sqr",
         "sqrt", "rsqr", "rsqrt", "log2", "relu", "sigmoid", "softplus", "gelu", "silu"]
BINARY = ["add", "sub", "mul", "div", "pow", "min", "max"]
COMPARE = ["lt", "gt", "le", "ge", "eq", "ne"]


class Gen:
    """Random valid flat NNEF graphs (shapes are not checked by either parser without inference)."""

    def __init__(self, seed):
        self.r = random.Random(seed)
        self.lines: list[str] = []
        self.scalars: list[str] = []
        self.logicals: list[str] = []
        self.n = 0
        self.used: set = set()

    def name(self, prefix="t"):
        self.n += 1
        # sometimes use names that look like Khronos fresh names, to test collision avoidance
        if self.r.random() < 0.15:
            name = self.r.choice(["mul", "add", "sub", "relu", "max_reduce", "sqr", "gt"]) + str(self.n % 3 + 1)
            if name not in self.used:
                self.used.add(name)
                return name
        return f"{prefix}{self.n}"

    def t(self):
        return self.r.choice(self.scalars[-6:])

    def real(self):
        return self.r.choice(["0.0", "1.0", "0.5", "-2.0", "3.25", "1e-3", "-0.5e1", "2.0"])

    def ints(self, k, lo=0, hi=3):
        return "[" + ", ".join(str(self.r.randint(lo, hi)) for _ in range(k)) + "]"

    def padding(self, k):
        return "[" + ", ".join(f"({self.r.randint(0, 2)}, {self.r.randint(0, 2)})" for _ in range(k)) + "]"

    def emit(self, line, outs=(), logical=()):
        self.lines.append("    " + line + ";")
        self.scalars.extend(outs)
        self.logicals.extend(logical)

    def statement(self):
        r = self.r
        y = self.name()
        k = r.randrange(30)
        if k < 5:
            self.emit(f"{y} = {r.choice(UNARY)}({self.t()})", [y])
        elif k < 9:
            other = self.t() if r.random() < 0.7 else self.real()
            self.emit(f"{y} = {r.choice(BINARY)}({self.t()}, {other})", [y])
        elif k == 9:
            self.emit(f"{y} = {r.choice(COMPARE)}({self.t()}, {self.real()})", logical=[y])
        elif k == 10 and self.logicals:
            self.emit(f"{y} = select({r.choice(self.logicals)}, {self.t()}, {self.real()})", [y])
        elif k == 11:
            act = r.choice([f"elu({self.t()}, alpha = {self.real()})", f"leaky_relu({self.t()}, alpha = 0.1)",
                            f"selu({self.t()})", f"prelu({self.t()}, {self.t()})",
                            f"clamp({self.t()}, {self.real()}, {self.t()})",
                            f"softmax({self.t()}, axes = {self.ints(r.randint(1, 2))})",
                            f"softmax({self.t()})"])
            self.emit(f"{y} = {act}", [y])
        elif k == 12:
            op = r.choice(["sum_reduce", "mean_reduce", "max_reduce", "min_reduce"])
            extra = ", normalize = true" if op == "sum_reduce" and r.random() < 0.5 else ""
            self.emit(f"{y} = {op}({self.t()}, axes = {self.ints(r.randint(1, 3))}{extra})", [y])
        elif k == 13:
            v = self.name()
            self.emit(f"{y}, {v} = moments({self.t()}, axes = [1])", [y, v])
        elif k == 14:
            ops = [f"reshape({self.t()}, shape = [1, -1])",
                   f"reshape({self.t()}, shape = [0, 2, -1], axis_start = 1, axis_count = 2)",
                   f"transpose({self.t()}, axes = [0, 2, 1])",
                   f"squeeze({self.t()}, axes = [0])", f"unsqueeze({self.t()}, axes = [0, 3])",
                   f"slice({self.t()}, axes = [1], begin = [1], end = [-1])",
                   f"slice({self.t()}, axes = [1, 2], begin = [0, 1], end = [4, 5], stride = [2, 1])",
                   f"pad({self.t()}, padding = {self.padding(2)}, border = 'reflect')",
                   f"pad({self.t()}, padding = {self.padding(3)}, value = 1.5)",
                   f"tile({self.t()}, repeats = {self.ints(3, 1, 3)})"]
            self.emit(f"{y} = {r.choice(ops)}", [y])
        elif k in (15, 16):
            w = self.name("w")
            self.emit(f"{w} = variable(shape = [4, 4, 3, 3], label = 'layer{self.n}/w')", [w])
            args = [f"border = '{r.choice(['constant', 'ignore', 'reflect', 'replicate'])}'"] if r.random() < 0.5 else []
            if r.random() < 0.5:
                args.append(f"padding = {self.padding(2)}")
            if r.random() < 0.5:
                args.append(f"stride = {self.ints(2, 1, 2)}")
            if r.random() < 0.3:
                args.append(f"dilation = {self.ints(2, 1, 2)}")
            if r.random() < 0.3:
                args.append(f"groups = {r.choice([0, 1, 2])}")
            op = r.choice(["conv", "conv", "deconv"])
            bias = r.choice(["", ", 0.0", f", {self.t()}"])
            a = (", " + ", ".join(args)) if args else ""
            self.emit(f"{y} = {op}({self.t()}, {w}{bias}{a})", [y])
        elif k == 17:
            op = r.choice(["max_pool", "avg_pool", "rms_pool", "box", "argmax_pool"])
            args = f"size = {self.ints(4, 1, 3)}"
            if r.random() < 0.5:
                args += f", stride = {self.ints(4, 1, 2)}"
            if r.random() < 0.5:
                args += f", border = '{r.choice(['constant', 'ignore'])}'"
            if r.random() < 0.3:
                args += f", padding = {self.padding(4)}"
            if op == "argmax_pool":
                self.emit(f"{y} = {op}({self.t()}, {args})")
            else:
                self.emit(f"{y} = {op}({self.t()}, {args})", [y])
        elif k == 18:
            i = self.name()
            self.emit(f"{y}, {i} = max_pool_with_index({self.t()}, size = [1, 1, 2, 2], stride = [1, 1, 2, 2])", [y])
        elif k == 19:
            ops = [f"linear({self.t()}, {self.t()})", f"linear({self.t()}, {self.t()}, {self.t()})",
                   f"matmul({self.t()}, {self.t()}, transposeA = true)",
                   f"local_response_normalization({self.t()}, size = [1, 5, 1, 1], alpha = 0.0001, beta = 0.75)",
                   f"l2_normalization({self.t()}, axes = [1], epsilon = 1e-5)",
                   f"l1_normalization({self.t()}, axes = [1, 2])",
                   f"local_contrast_normalization({self.t()}, size = [1, 1, 3, 3])",
                   f"batch_normalization({self.t()}, {self.t()}, {self.t()}, {self.t()}, {self.t()}, epsilon = 1e-3)",
                   f"nearest_upsample({self.t()}, factor = [2, 2])",
                   f"area_downsample({self.t()}, factor = [2, 2])",
                   f"nearest_downsample({self.t()}, factor = [2, 3])",
                   f"multilinear_upsample({self.t()}, factor = [2, 2], method = 'aligned', border = 'replicate')",
                   f"separable_conv({self.t()}, {self.t()}, {self.t()}, padding = [(1, 1), (1, 1)])",
                   f"min_max_linear_quantize({self.t()}, 0.0, 1.0, bits = 8, signed = true, symmetric = false)",
                   f"min_max_linear_quantize({self.t()}, {self.t()}, {self.t()}, bits = 4, signed = false, symmetric = true)",
                   f"linear_quantize({self.t()}, -1.0, 1.0, bits = 8)",
                   f"logarithmic_quantize({self.t()}, 4.0, bits = 5)"]
            self.emit(f"{y} = {r.choice(ops)}", [y])
        elif k == 20:
            a, b = self.name(), self.name()
            if r.random() < 0.5:
                self.emit(f"[{a}, {b}] = split({self.t()}, axis = 1, ratios = [1, 2])", [a, b])
            else:
                self.emit(f"[{a}, {b}] = unstack({self.t()}, axis = 0)", [a, b])
            self.emit(f"{y} = {r.choice(['concat', 'stack'])}([{a}, {b}, {self.t()}], axis = 1)", [y])
        elif k == 21:
            items = ", ".join(self.t() for _ in range(r.randint(1, 4)))
            self.emit(f"{y} = add_n([{items}])", [y])
        elif k == 22:
            a, b = self.name(), self.name()
            self.emit(f"[{a}, {b}] = copy_n({self.t()}, times = 2)", [a, b])
        elif k == 23:
            c = self.name("c")
            self.emit(f"{c} = constant<integer>(shape = [3], value = [1, 2, 3])")
            self.emit(f"{y} = gather({self.t()}, {c}, axis = 1)", [y])
        elif k == 24:
            self.emit(f"{y} = zero_point_linear_quantize({self.t()}, 0, 0.5, bits = 8, "
                      f"signed = {r.choice(['true', 'false'])}, symmetric = false)", [y])
        elif k == 25:
            ops = [f"{r.choice(['sum_reduce', 'max_reduce'])}({self.t()}, axes = [1])",
                   f"cast<scalar>({self.t()})", f"copy<scalar>({self.t()})",
                   f"{r.choice(['argmax_reduce', 'argmin_reduce'])}({self.t()}, axes = [1])"]
            choice = r.choice(ops)
            self.emit(f"{y} = {choice}", [] if "arg" in choice else [y])
        elif k == 26:
            op = r.choice(["any_reduce", "all_reduce"])
            if self.logicals:
                self.emit(f"{y} = {op}({r.choice(self.logicals)}, axes = [1])", logical=[y])
            else:
                self.emit(f"{y} = not({self.t()} > 0.0)" if False else f"{y} = lt({self.t()}, 1.0)", logical=[y])
        elif k == 27 and len(self.logicals) >= 2:
            op = r.choice(["and", "or"])
            self.emit(f"{y} = {op}({r.choice(self.logicals)}, {r.choice(self.logicals)})", logical=[y])
        else:
            self.emit(f"{y} = {r.choice(UNARY)}({self.t()})", [y])

    def flat(self, n_stmts):
        self.emit("x1 = external(shape = [2, 4, 8, 8])", ["x1"])
        self.emit("x2 = external<scalar>(shape = [2, 4, 8, 8])", ["x2"])
        for _ in range(n_stmts):
            self.statement()
        outs = self.scalars[-1]
        return ("version 1.0;\n\ngraph G( x1, x2 ) -> ( " + outs + " )\n{\n"
                + "\n".join(self.lines) + "\n}\n")

    # ---- operator expressions
    def expr(self, depth):
        r = self.r
        if depth <= 0 or r.random() < 0.25:
            if r.random() < 0.8:
                return self.t()
            lit = self.real()
            return f"({lit})" if lit.startswith("-") else lit   # E1: Khronos' unary minus swallows the rest
        k = r.randrange(10)
        a, b = self.expr(depth - 1), self.expr(depth - 1)
        if k < 4:
            return f"{a} {r.choice(['+', '-', '*', '/'])} {b}"
        if k == 4:
            return f"({a} {r.choice(['+', '-'])} {b}) ^ {r.choice(['2.0', '0.5', self.t()])}"
        if k == 5:
            return f"{r.choice(UNARY + ['max_reduce'] if False else UNARY)}({a})"
        if k == 6:
            return f"select({a} {r.choice(['<', '>', '<=', '>=', '==', '!='])} {b}, {a}, {b})"
        if k == 7:
            return f"(-{self.t()})"
        if k == 8:
            return f"{r.choice(BINARY)}({a}, {b})"
        return f"({a})"

    def attribute_expr(self):
        """An attribute argument that needs compile-time folding."""
        r = self.r
        return r.choice([
            ("mul", f"y = {1.0 + r.randint(0, 4)} * 2.0 + 0.5 / 4.0"),
            ("softmax", "axes = [1] + [2] * 2"),
            ("sum_reduce", f"axes = [for i in range_of([0, 0, 0]) if i != {r.randint(0, 2)} yield i + 1]"),
            ("sum_reduce", "axes = [1, 2, 3][1:]"),
            ("sum_reduce", "axes = [1, 2, 3][:length_of([0, 0])]"),
            ("sum_reduce", "axes = [2] if 3 in [1, 2, 3] else [1]"),
            ("sum_reduce", f"axes = [7 / 2, {r.randint(0, 20)} / 3, 2 ^ 3]"),
            ("sum_reduce", "axes = [integer(2.7), integer(true), integer(3.0 * 2.0)]"),
            ("mul", "y = scalar(5) / 2.0 if 4 > 3 && !false else 1.0"),
            ("mul", "y = scalar(length_of('ab' + 'cde')) + scalar(logical(0))"),
            ("mul", "y = (1.0 + 3.0) ^ 2.0"),
            ("sum_reduce", "axes = [for i in [1, 2, 3], j in [3, 2, 1] yield i * j]"),
        ])

    def expressions(self, n_stmts):
        self.emit("x1 = external(shape = [2, 4, 8, 8])", ["x1"])
        self.emit("x2 = external(shape = [2, 4, 8, 8])", ["x2"])
        for _ in range(n_stmts):
            y = self.name()
            if self.r.random() < 0.25:
                op, arg = self.attribute_expr()
                if op == "mul":
                    self.emit(f"{y} = mul({self.t()}, {arg})", [y])
                else:
                    self.emit(f"{y} = {op}({self.t()}, {arg})", [y])
            else:
                e = self.expr(3)
                while re.fullmatch(r"[()\-]*[\w.\-]+\)*", e) or not set(re.findall(r"[a-z_]\w*", e)) & set(self.scalars):
                    e = self.expr(3)      # bare identifier or attribute-only RHS: E11 (Khronos emits nothing)
                self.emit(f"{y} = {e}", [y])
        return ("version 1.0;\nextension KHR_enable_operator_expressions;\n\ngraph G( x1, x2 ) -> ( "
                + self.scalars[-1] + " )\n{\n" + "\n".join(self.lines) + "\n}\n")


def _random_lowering(r, text):
    choice = r.randrange(3)
    if choice == 0:
        return []
    # E1: Khronos mis-lowers zero_point_linear_quantize; keep it atomic in comparisons
    present = [c for c in compounds() if c + "(" in text and c != "zero_point_linear_quantize"]
    if choice == 1:
        return [c for c in present if r.random() < 0.5]
    return [c for c in compounds() if c != "zero_point_linear_quantize"]


@pytest.mark.parametrize("seed", range(40))
def test_generated_flat_documents(seed):
    g = Gen(seed)
    text = g.flat(25)
    lowered = _random_lowering(random.Random(seed), text)
    assert compare(text, lowered)


@pytest.mark.parametrize("seed", range(40))
def test_generated_operator_expressions(seed):
    g = Gen(1000 + seed)
    text = g.expressions(10)
    lowered = _random_lowering(random.Random(seed), text)
    assert compare(text, lowered)


MUTATIONS = [
    (r"(?<![\w.\-])0\.5(?![\w.])", "1"),   # integer where scalar expected (no implicit cast)
    (r"axes = \[1\]", "[1]"),              # attribute passed positionally
    (r"\((x1)\)", "(x1, x1)"),              # too many positional arguments
    (r"\bx1\b", "x9"),                      # undeclared identifier
    (r"\bsize = ", "sizes = "),              # unknown parameter name
    (r"\blabel = ", "label = 'a', label = "),  # duplicate argument
    (r"\bbits = 8\b", "bits = 8.0"),        # scalar where integer expected
    (r"\brelu\(", "relu_x("),                # undeclared operation
    (r"\baxes = \[1\]", "axes = 1"),       # integer where integer[] expected
]


@pytest.mark.parametrize("seed", range(24))
def test_generated_invalid_documents(seed):
    r = random.Random(seed)
    g = Gen(2000 + seed)
    text = g.flat(15)
    header, body = text.split("{", 1)
    lines = body.split("\n")
    mut = [(m, i) for m in MUTATIONS for i, line in enumerate(lines[3:], 3) if re.search(m[0], line)]
    assert mut
    (old, new), idx = r.choice(mut)
    lines[idx] = re.sub(old, new, lines[idx], count=1)
    mutated = header + "{" + "\n".join(lines)
    assert compare(mutated) is False


def test_duplicate_assignment_rejected_by_both():
    text = Gen(7).flat(5)
    lines = text.split("\n")
    first = next(i for i, line in enumerate(lines) if line.strip().startswith("t") and "=" in line)
    lines.insert(first + 1, lines[first])
    assert compare("\n".join(lines)) is False


# ------------------------------------------- documented Khronos divergences --
def _ops(text, lower=None):
    return semantics.build_graph(syntax.parse(text, "t.nnef"), lower=lower)[0].operations


def test_E1_unary_minus_precedence_spec_answer():
    text = ("version 1.0;\nextension KHR_enable_operator_expressions;\n"
            "graph G(a, b) -> (y) { a = external(shape=[1]); b = external(shape=[1]); y = -a * b; }")
    ops = _ops(text)
    assert [op.name for op in ops[2:]] == ["neg", "mul"]          # (-a) * b per the spec
    k = [op.name for op in theirs(text).operations[2:]]
    assert k == ["mul", "neg"]                                      # Khronos: -(a * b)


def test_E1_zero_point_linear_quantize_lower_bound():
    text = ("version 1.0;\ngraph G(x) -> (y) { x = external(shape=[4]);\n"
            "y = zero_point_linear_quantize(x, 0, 0.5, bits = 8, signed = true, symmetric = false); }")
    ops = _ops(text, lower="all")
    selects = [op for op in ops if op.name == "select"]
    bounds = sorted(op.inputs["false_value"] for op in selects)
    assert bounds == [-128.0, 127.0]
    kops = theirs(text, lowered=compounds()).operations
    kbounds = sorted(op.inputs["false_value"] for op in kops if op.name == "select")
    assert kbounds == [126.0, 127.0]                                 # the Khronos bug
    ops = _ops(text.replace("false)", "true)"), lower="all")
    assert sorted(op.inputs["false_value"] for op in ops if op.name == "select") == [-127.0, 127.0]


def test_E3_logical_tensor_operators_spec_answer():
    text = (EXAMPLES / "d02_logical_tensor_operators.nnef").read_text()
    ops = _ops(text)
    assert [op.name for op in ops] == ["external", "gt", "gt", "not", "and", "select"]
    with pytest.raises(Exception):
        theirs(text)
    bad = ("version 1.0;\nextension KHR_enable_operator_expressions;\n"
           "graph G(a) -> (y) { a = external(shape=[1]); m = a > 0.0; y = m == m; }")
    with pytest.raises(NNEFError, match="cannot be cast to type 'tensor<scalar>'"):
        _ops(bad)
    bad2 = bad.replace("m == m", "a && a")
    with pytest.raises(NNEFError, match="tensor<logical>"):
        _ops(bad2)


def test_E5_strings_tuples_ranges_spec_answer():
    text = ("version 1.0;\nextension KHR_enable_operator_expressions;\n"
            "graph G(x) -> (y) { x = external(shape=[1]);\n"
            "y = mul(x, scalar(length_of('ab' * 3 + 'abcdef'[1:3])) + scalar((1, 4)[1]) "
            "+ scalar(length_of([1, 2, 3][2:1]))); }")
    ops = _ops(text)
    assert ops[1].inputs["y"] == 8.0 + 4.0 + 0.0


def test_E11_graph_copy_emitted():
    text = ("version 1.0;\nextension KHR_enable_operator_expressions;\n"
            "graph G(x) -> (y) { x = external(shape=[1]); y = x; }")
    ops = _ops(text)
    assert [(op.name, op.inputs, op.outputs) for op in ops[1:]] == [("copy", {"x": "x"}, {"y": "y"})]
    assert [op.name for op in theirs(text).operations] == ["external"]   # Khronos: y dangles


# ------------------------------------------------ compositional documents --
COMPOSITIONAL = [
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) "
     "{ [a, b] = split(x, axis = 1, ratios = [1, 1]); y = add(a, b); }", "y = f(x);", None),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>[]) { y = split(x, axis = 1, ratios = [1, 1]); }",
     "[a, b] = f(x); y = add(a, b);", None),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { c = copy_n(x, times = 2); y = add(c[0], c[1]); }",
     "y = f(x);", ["f", "copy_n"]),
    ("fragment f(x: tensor<scalar>, n: integer) -> (y: tensor<scalar>[]) "
     "{ y = [for i in range_of([0] * n) yield x * scalar(i)]; }", "[a, b, d] = f(x, n = 3); y = add(a, b);", None),
    ("fragment f<?>(x: tensor<?>) -> (y: tensor<?>, z: tensor<?>) { y = copy(x); z = copy<?>(x); }",
     "a, b = f(x); y = add(a, b);", None),
    ("fragment f<?>(x: tensor<?>) -> (y: tensor<?>) { y = select(true, x, x); }",
     "c = x > 0.0; d = f(c); y = select(d, x, x);", None),
    ("fragment f(x: tensor<scalar>, s: scalar[] = [1.0, 2.0]) -> (y: tensor<scalar>) "
     "{ y = add_n([for v in s yield x * v]); }", "y = f(x, s = [3.0, 4.0, 5.0]);", ["f", "add_n"]),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>, z: tensor<scalar>) { y, z = moments(x, axes = [1]); }",
     "a, b = f(x); y = add(a, b);", ["f", "moments", "mean_reduce", "sqr"]),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x if false else relu(x); }", "y = f(x);", None),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = relu(x) if true else x; }",
     "y = relu(f(x)) + f(x);", None),
    ("", "y = max_pool(x, size = [1, 1, 2]) + avg_pool(x, size = [1, 1, 2]);",
     ["max_pool", "max_pool_with_index", "avg_pool"]),
    ("", "y = linear(x, x) * 2.0;", ["linear"]),
    ("", "y = 1.0 / x + min(x, 1.0) + max(1.0, x);", None),
    ("", "y = clamp(x, 0.0, 1.0);", ["clamp", "min", "max"]),
    ("fragment f(x: tensor<scalar>, k: integer = 2) -> (y: tensor<scalar>) "
     "{ y = x ^ scalar(k) if k > 1 else x; }", "y = f(x, k = 3);", None),
    ("fragment f(xs: tensor<scalar>[]) -> (y: tensor<scalar>) "
     "{ y = xs[0] + f(xs[1:]) if length_of(xs) > 1 else xs[0]; }", "y = f([x, x, x, x]);", None),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = 0.0; }", "y = f(x);", None),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }", "y = relu(f(x));", None),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>[]) { y = copy_n(x, times = 2); }",
     "[a, b] = f(x); y = add(a, b);", None),
    ("fragment g(x: tensor<scalar>, a: scalar) -> (y: tensor<scalar>) { y = x * a; }\n"
     "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { t = g(x, a = 2.0); y = g(t, a = 0.5) + t; }",
     "y = f(x) - g(x, a = 3.0);", None),
    ("fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }", "y = f(x);", []),
]


@pytest.mark.parametrize("frags, body, lowered", COMPOSITIONAL)
def test_compositional_documents_match_khronos(frags, body, lowered):
    text = ("version 1.0;\nextension KHR_enable_fragment_definitions, KHR_enable_operator_expressions;\n"
            + frags + "\ngraph G(x) -> (y) {\n  x = external(shape = [2, 4, 6]);\n  " + body + "\n}\n")
    if lowered is None:
        lowered = re.findall(r"fragment (\w+)", frags)
    assert compare(text, lowered)


def test_tuple_subscript_spec_answer():
    """E5: Khronos returns a tail array for t[i]; the spec means the item."""
    text = ("version 1.0;\nextension KHR_enable_fragment_definitions, KHR_enable_operator_expressions;\n"
            "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { t = (x, relu(x)); y = t[0] + t[1]; }\n"
            "graph G(x) -> (y) { x = external(shape = [2]); y = f(x); }")
    ops = _ops(text)
    assert [(op.name, op.inputs) for op in ops[1:]] == [("relu", {"x": "x"}), ("add", {"x": "x", "y": "relu1"})]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 400))
def test_generated_documents_many(seed):
    for kind in ("flat", "expr"):
        g = Gen(seed * 7 + (0 if kind == "flat" else 1))
        text = g.flat(30) if kind == "flat" else g.expressions(12)
        assert compare(text, _random_lowering(random.Random(seed), text))


ZOO = pathlib.Path(__file__).resolve().parents[2] / "zoo"


@pytest.mark.parametrize("lowering", ["none", "all"])
def test_zoo_models_match_khronos(lowering):
    """Real converted models (scripts/make_zoo.py output, when built): identical operation lists."""
    graphs = sorted(ZOO.glob("*/nnef/graph.nnef"))
    if not graphs:
        pytest.skip("model zoo not built (scripts/make_zoo.py)")
    lowered = [] if lowering == "none" else [c for c in compounds() if c != "zero_point_linear_quantize"]
    for path in graphs:
        assert compare(path.read_text(), lowered), path


class IntExprGen:
    """Random integer/logical attribute expressions (compile-time folding), avoiding E1/E5 and int32 overflow."""

    def __init__(self, seed):
        self.r = random.Random(seed)

    def integer(self, depth):
        r = self.r
        if depth <= 0 or r.random() < 0.2:
            return str(r.randint(0, 9))
        k = r.randrange(9)
        if k < 3:
            return f"({self.integer(depth - 1)} {r.choice(['+', '-', '*'])} {self.integer(depth - 1)})"
        if k == 3:   # Khronos crashes (SIGFPE) on a zero divisor: divide by a positive literal only
            return f"({self.integer(depth - 1)} / {r.randint(1, 9)})"
        if k == 4:
            return f"{r.randint(1, 9)} ^ {r.randint(0, 3)}"
        if k == 5:
            return f"({self.integer(depth - 1)} if {self.logical(depth - 1)} else {self.integer(depth - 1)})"
        if k == 6:
            return f"length_of({self.array(depth - 1)})"
        if k == 7:
            return f"([{self.integer(depth - 1)}] + {self.array(depth - 1)})[{r.randint(0, 1)}]"
        return f"integer({self.logical(depth - 1)})"

    def logical(self, depth):
        r = self.r
        if depth <= 0 or r.random() < 0.2:
            return r.choice(["true", "false"])
        k = r.randrange(5)
        if k < 2:
            return f"({self.integer(depth - 1)} {r.choice(['<', '<=', '>', '>=', '==', '!='])} {self.integer(depth - 1)})"
        if k == 2:
            return f"({self.logical(depth - 1)} {r.choice(['&&', '||'])} {self.logical(depth - 1)})"
        if k == 3:
            return f"({self.integer(depth - 1)} in {self.array(depth - 1)})"
        # not 'logical == logical': Khronos raises 'kind mismatch' (E13)
        return f"({self.logical(depth - 1)} || !{self.logical(depth - 1)})"

    def array(self, depth):
        r = self.r
        k = r.randrange(4)
        if depth <= 0 or k == 0:
            return "[" + ", ".join(str(r.randint(0, 9)) for _ in range(r.randint(1, 4))) + "]"
        if k == 1:
            return f"({self.array(depth - 1)} + {self.array(depth - 1)})"
        if k == 2:
            return f"([for i in {self.array(depth - 1)} if i > {r.randint(0, 5)} yield i * 2] + [1])"
        return f"({self.array(depth - 1)} * {r.randint(1, 3)})"


@pytest.mark.parametrize("seed", range(30))
def test_generated_attribute_expressions(seed):
    g = IntExprGen(seed)
    lines = ["  x = external(shape = [1]);"]
    for k in range(8):
        lines.append(f"  t{k} = pad(x, padding = [({g.integer(3)}, {g.integer(3)})], "
                     f"value = scalar({g.integer(3)}) / 2.0 if {g.logical(3)} else 0.5);")
    text = ("version 1.0;\nextension KHR_enable_operator_expressions;\ngraph G(x) -> (t7) {\n"
            + "\n".join(lines) + "\n}\n")
    assert compare(text)          # same folded values


BAD_FRAGMENTS = [
    "fragment relu(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }",
    "fragment f<?>(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }",
    "fragment f(x: tensor<?>) -> (y: tensor<?>) { y = x; }",
    "fragment f(a: integer, x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }",
    "fragment f(x: tensor<scalar>, a: integer = 1.0) -> (y: tensor<scalar>) { y = x; }",
    "fragment f(x: tensor<scalar>, x: integer) -> (y: tensor<scalar>) { y = x; }",
    "fragment f(x: tensor<scalar>) -> (x: tensor<scalar>) { x = x; }",
    "fragment f(x: tensor<>) -> (y: tensor<>) { y = x; }",
    "fragment f(x: (tensor<scalar>, integer)) -> (y: tensor<scalar>) { y = x[0]; }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>, z: tensor<scalar>) { y = x; }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { x = relu(x); y = x; }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = relu(x); y = x; }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { v = variable(shape = [1], label = 'v'); y = x; }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = update(x, x); }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x > 0.0; }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { c = split(x, axis = 0, ratios = [1, 1]); y = c[0]; }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = add(x, q); }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }\n"
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>) { y = x; }",
    "fragment f(x: tensor<scalar>) -> (y: tensor<scalar>[]) { y = [x, 1]; }",
]


@pytest.mark.parametrize("frag", BAD_FRAGMENTS)
def test_bad_fragment_declarations_rejected_by_both(frag):
    text = ("version 1.0;\nextension KHR_enable_fragment_definitions, KHR_enable_operator_expressions;\n"
            + frag + "\ngraph G(x) -> (y) {\n  x = external(shape = [2]);\n  y = f(x);\n}\n")
    assert compare(text, ["f"]) is False


def test_mixed_array_default_spec_answer():
    """Khronos accepts `a: integer[] = [1, 2.0]`; array items must have a common type (spec)."""
    text = ("version 1.0;\nextension KHR_enable_fragment_definitions;\n"
            "fragment f(x: tensor<scalar>, a: integer[] = [1, 2.0]) -> (y: tensor<scalar>) { y = copy(x); }\n"
            "graph G(x) -> (y) { x = external(shape = [2]); y = f(x); }\n")
    theirs(text)
    with pytest.raises(NNEFError, match="no common type"):
        ours(text)


def test_E13_equality_and_unary_plus_spec_answer():
    ext = "version 1.0;\nextension KHR_enable_operator_expressions;\n"
    text = ext + ("graph G(x) -> (y) { x = external(shape = [1]);\n"
                  "y = pad(x, padding = [], border = 'constant' if 'a' == 'a' && 'a' != 'b' else 'reflect'); }")
    assert _ops(text)[1].attribs["border"] == "constant"        # strings compare (Khronos: kind mismatch)
    with pytest.raises(Exception):
        theirs(text)
    bad = ext + "graph G(x) -> (y) { x = external(shape = [1]); y = mul(x, 1.0 if 1 == 1.0 else 2.0); }"
    with pytest.raises(NNEFError, match="invalid operand types 'integer' and 'scalar'"):
        _ops(bad)
    plus = ext + "graph G(x) -> (y) { x = external(shape = [1]); y = +x; }"
    assert [(op.name, op.dtype) for op in _ops(plus)[1:]] == [("copy", "scalar")]   # Khronos: no unary +
    with pytest.raises(Exception):
        theirs(plus)


def test_E14_strict_flat_subset_decision():
    """Khronos accepts operator expressions without the extension; we follow the spec and reject them."""
    text = ("version 1.0;\ngraph G(x) -> (y) { x = external(shape = [1]);\n"
            "y = add(x, relu(x) * 2.0); }")
    assert [op.name for op in theirs(text).operations] == ["external", "relu", "mul", "add"]
    with pytest.raises(NNEFError, match="KHR_enable_operator_expressions"):
        ours(text)
    enabled = text.replace("version 1.0;\n", "version 1.0;\nextension KHR_enable_operator_expressions;\n")
    assert compare(enabled)


def random_fragment_document(seed):
    """A random custom fragment (tensor and attribute parameters, locals, 1-2 results) used 1-3 times."""
    r = random.Random(seed)
    g = Gen(seed)
    g.scalars = ["x", "w"]
    n_res = r.randint(1, 2)
    body = []
    for k in range(r.randint(1, 3)):
        e = g.expr(2)
        if r.random() < 0.5:      # use the attribute parameters in place of some literals
            e = re.sub(r"(?<![\w.])2\.0(?![\w.])", "a", e)
            e = re.sub(r"(?<![\w.])0\.5(?![\w.])", "scalar(n)", e)
        body.append(f"t{k} = {e} + w;")
        g.scalars.append(f"t{k}")
    for k in range(n_res):
        body.append(f"r{k} = {r.choice(['relu', 'copy', 'sqr', 'neg'])}({g.r.choice(g.scalars)})"
                    f"{' * a' if r.random() < 0.5 else ''};")
    results = ", ".join(f"r{k}: tensor<scalar>" for k in range(n_res))
    frag = (f"fragment f(x: tensor<scalar>, w: tensor<scalar> = 0.5, a: scalar = 2.0, n: integer = 3) "
            f"-> ({results})\n{{\n    " + "\n    ".join(body) + "\n}\n")
    lines = ["    x = external(shape = [2, 3]);"]
    outs = []
    for i in range(r.randint(1, 3)):
        lhs = ", ".join(f"o{i}_{k}" for k in range(n_res))
        args = ["x" if i == 0 else outs[-1]]
        if r.random() < 0.5:
            args.append("x")
        if r.random() < 0.5:
            args.append(f"a = {r.choice(['1.5', '3.0', '0.25'])}")
        if r.random() < 0.5:
            args.append(f"n = {r.randint(1, 4)}")
        lines.append(f"    {lhs} = f({', '.join(args)});")
        outs.append(f"o{i}_0")
    text = ("version 1.0;\nextension KHR_enable_fragment_definitions, KHR_enable_operator_expressions;\n"
            + frag + f"graph G( x ) -> ( {outs[-1]} )\n{{\n" + "\n".join(lines) + "\n}\n")
    lowered = r.choice([["f"], [], ["f"] + compounds()[: r.randint(0, 45)], ["f", "relu", "max", "sqr"]])
    return text, [c for c in lowered if c != "zero_point_linear_quantize"]


@pytest.mark.parametrize("seed", range(40))
def test_generated_fragment_documents(seed):
    text, lowered = random_fragment_document(seed)
    assert compare(text, lowered)
