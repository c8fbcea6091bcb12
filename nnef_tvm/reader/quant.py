"""The quantization file ``graph.quant`` (spec §5.3) and dequantization of stored codes.

Each entry says how one tensor of the graph is (pseudo-)quantized::

    "conv1": zero_point_linear_quantize(zero_point = 0, scale = 0.5, bits = 8,
                                        signed = true, symmetric = false);

The key is a tensor *identifier* of the graph body; the call names a
quantization fragment whose first (tensor) parameter is implied and must not be
written; every other argument is named and a literal. Tensor-typed parameters
take a literal or a rectangular nested array literal, which broadcasts against
the tensor with NNEF's left-aligned rule (a ``[C]`` array varies along axis 0).

What we accept is deliberately the literal-only subset that the Khronos reader
accepts (no identifiers, no expressions), with the same typing as
``graph.nnef``: an integer literal does not cast to ``tensor<scalar>``.

Values come back the way the Khronos Python API gives them: tensor arguments as
numpy arrays (float32 for ``tensor<scalar>``, int32 for ``tensor<integer>``,
bool for ``tensor<logical>``; 0-d for a plain literal), everything else as
Python values.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import NNEFError, SourcePos

_GRAMMAR = r"""
start: entry*
entry: STRING ":" NAME "(" [arg ("," arg)*] ")" ";"
arg: NAME "=" value
?value: NUMBER                      -> number
      | STRING                      -> string
      | "true"                      -> true
      | "false"                     -> false
      | NAME                        -> identifier
      | "[" [value ("," value)*] "]" -> array
      | "(" value ("," value)+ ")"  -> tuple

NUMBER: /-?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?/
STRING: /'[^'\n]*'/ | /"[^"\n]*"/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
COMMENT: /#[^\n]*/
%ignore COMMENT
%ignore /[ \t\r\n\f]+/
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=True,
               maybe_placeholders=True)

_TOKEN_WORDS = {
    "STRING": "a quoted tensor name or string", "NAME": "a name", "NUMBER": "a number",
    "COLON": "':'", "SEMICOLON": "';'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "EQUAL": "'='", "TRUE": "'true'", "FALSE": "'false'", "$END": "end of file",
}

# The standard quantization fragments (NNEF 1.0.5, §4.9.5): parameter name,
# type, default (None = required). The first parameter is the quantized tensor.
_REQUIRED = None
STANDARD_SIGNATURES: dict[str, list[tuple[str, str, Any]]] = {
    "min_max_linear_quantize": [
        ("x", "tensor<scalar>", _REQUIRED), ("min", "tensor<scalar>", _REQUIRED),
        ("max", "tensor<scalar>", _REQUIRED), ("bits", "integer", _REQUIRED),
        ("signed", "logical", _REQUIRED), ("symmetric", "logical", _REQUIRED)],
    "zero_point_linear_quantize": [
        ("x", "tensor<scalar>", _REQUIRED), ("zero_point", "tensor<integer>", _REQUIRED),
        ("scale", "tensor<scalar>", _REQUIRED), ("bits", "integer", _REQUIRED),
        ("signed", "logical", _REQUIRED), ("symmetric", "logical", _REQUIRED)],
    "linear_quantize": [
        ("x", "tensor<scalar>", _REQUIRED), ("min", "tensor<scalar>", _REQUIRED),
        ("max", "tensor<scalar>", _REQUIRED), ("bits", "integer", _REQUIRED)],
    "logarithmic_quantize": [
        ("x", "tensor<scalar>", _REQUIRED), ("max", "tensor<scalar>", _REQUIRED),
        ("bits", "integer", _REQUIRED)],
}


class QuantEntries(dict):
    """``{tensor identifier: {'op-name': ..., arg: value}}`` plus where each entry is written."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.positions: dict[str, SourcePos] = {}


@dataclass
class _Lit:
    """A literal value with its kind ('integer', 'scalar', 'string', 'logical', 'array', 'tuple')."""
    kind: str
    value: Any
    pos: SourcePos


# ---------------------------------------------------------------- parsing ----
def parse_quant(text: str, file: str = "graph.quant", fragments: Optional[dict] = None) -> QuantEntries:
    """Parse ``graph.quant`` text into ``{tensor identifier: {'op-name': name, arg: value}}``.

    ``fragments``: extra (custom) quantization fragments allowed besides the four
    standard ones, as ``{name: [(param, type string, default or None), ...]}``
    or ``{name: ast.Fragment}`` (the document's custom fragments).
    """
    signatures = dict(STANDARD_SIGNATURES)
    for name, spec in (fragments or {}).items():
        sig = _signature_of(spec)
        if sig is not None:
            signatures[name] = sig
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, file) from None

    entries = QuantEntries()
    errors: list[NNEFError] = []
    for entry in tree.children:
        try:
            key, pos, value = _entry(entry, file, signatures)
        except NNEFError as e:
            errors.append(e)
            continue
        if key in entries:
            first = entries.positions[key]
            errors.append(NNEFError(f"duplicate quantization entries for tensor '{key}' "
                                    f"(first at line {first.line})", pos))
            continue
        entries[key] = value
        entries.positions[key] = pos
    if errors:
        raise NNEFError.collect(errors)
    return entries


def _syntax_error(e: UnexpectedInput, text: str, file: str) -> NNEFError:
    line, column = getattr(e, "line", None), getattr(e, "column", None)
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else "?"
        msg = f"unexpected character {ch!r}"
        if ch in "+-*/^<>!&|":
            msg += "; graph.quant accepts literals only, no expressions"
        return NNEFError(msg, SourcePos(file, line, column))
    accepted = getattr(e, "expected", None) or ()
    if isinstance(e, UnexpectedToken) and e.interactive_parser is not None:
        try:
            accepted = e.interactive_parser.accepts() or accepted
        except Exception:  # pragma: no cover - best effort, the set from lark is still valid
            pass
    expected = sorted(_TOKEN_WORDS.get(t, t) for t in accepted)
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        return NNEFError(f"unexpected end of file, expected {' or '.join(expected)}", SourcePos(file, line, column))
    tok = e.token
    found = f"'{tok}'" if tok.type != "STRING" else tok
    msg = f"expected {' or '.join(expected)}, found {found}"
    if tok.type == "NUMBER" and tok.startswith("-") and "COMMA" in accepted:
        msg += "; graph.quant accepts literals only, no expressions"
    return NNEFError(msg, SourcePos(file, tok.line, tok.column))


def _pos(file: str, node) -> SourcePos:
    if isinstance(node, Token):
        return SourcePos(file, node.line, node.column)
    return SourcePos(file, node.meta.line, node.meta.column)


def _entry(entry: Tree, file: str, signatures: dict):
    key_tok, op_tok, *args = entry.children
    key = str(key_tok)[1:-1]
    pos = _pos(file, key_tok)
    if not key:
        raise NNEFError("empty tensor name in quantization entry", pos)
    op = str(op_tok)
    sig = signatures.get(op)
    if sig is None:
        raise NNEFError(f"'{op}' is not a quantization operation; expected one of "
                        f"{', '.join(sorted(signatures))}", _pos(file, op_tok))
    params = {p: (t, d) for p, t, d in sig}
    first = sig[0][0]
    result: dict[str, Any] = {"op-name": op}
    errors: list[NNEFError] = []
    given: set[str] = set()
    for arg in args:
        if arg is None:       # empty argument list placeholder
            continue
        name_tok, value_node = arg.children
        name = str(name_tok)
        apos = _pos(file, name_tok)
        if name == first:
            errors.append(NNEFError(f"argument '{name}' of '{op}' must not be provided: it is the "
                                    f"quantized tensor itself", apos))
            continue
        if name not in params:
            errors.append(NNEFError(f"'{op}' has no parameter '{name}'; expected one of "
                                    f"{', '.join(p for p, _, _ in sig[1:])}", apos))
            continue
        if name in given:
            errors.append(NNEFError(f"argument '{name}' given twice", apos))
            continue
        given.add(name)
        try:
            result[name] = _convert(_literal(value_node, file), params[name][0], name)
        except NNEFError as e:
            errors.append(e)
    for p, t, default in sig[1:]:
        if p in given:
            continue
        if default is _REQUIRED:
            errors.append(NNEFError(f"missing required argument '{p}' of '{op}'", _pos(file, op_tok)))
        else:
            result[p] = _convert(_from_python(default, _pos(file, op_tok)), t, p)
    if errors:
        raise NNEFError.collect(errors)
    # keep the signature's parameter order (handy for printing), 'op-name' first
    ordered = {"op-name": op}
    ordered.update((p, result[p]) for p, _, _ in sig[1:] if p in result)
    return key, pos, ordered


_MAX_NESTING = 32


def _literal(node, file: str, depth: int = 0) -> _Lit:
    pos = _pos(file, node)
    if depth > _MAX_NESTING:
        raise NNEFError(f"array/tuple literals nested deeper than {_MAX_NESTING} levels", pos)
    kind = node.data
    if kind == "number":
        text = str(node.children[0])
        if any(c in text for c in ".eE"):
            return _Lit("scalar", float(text), pos)
        return _Lit("integer", int(text), pos)
    if kind == "string":
        return _Lit("string", str(node.children[0])[1:-1], pos)
    if kind in ("true", "false"):
        return _Lit("logical", kind == "true", pos)
    if kind == "identifier":
        raise NNEFError(f"identifier '{node.children[0]}' not allowed in graph.quant: "
                        f"arguments must be literals", pos)
    items = [_literal(c, file, depth + 1) for c in node.children if c is not None]
    return _Lit(kind, items, pos)


def _from_python(value, pos: SourcePos) -> _Lit:
    """A default given as a Python value (light fragment specs)."""
    if isinstance(value, _Lit):
        return value
    if isinstance(value, bool):
        return _Lit("logical", value, pos)
    if isinstance(value, int):
        return _Lit("integer", value, pos)
    if isinstance(value, float):
        return _Lit("scalar", value, pos)
    if isinstance(value, str):
        return _Lit("string", value, pos)
    if isinstance(value, list):
        return _Lit("array", [_from_python(v, pos) for v in value], pos)
    if isinstance(value, tuple):
        return _Lit("tuple", [_from_python(v, pos) for v in value], pos)
    raise TypeError(f"unsupported default value {value!r}")


# ------------------------------------------------------------ type checks ----
def _split_type(t: str):
    """'tensor<scalar>' -> ('tensor', 'scalar'); 'integer[]' -> ('array', 'integer'); '(a,b)' -> ('tuple', [...])."""
    t = t.replace(" ", "")
    if t.endswith("[]"):
        return "array", t[:-2]
    if t.startswith("(") and t.endswith(")"):
        parts, depth, cur = [], 0, ""
        for ch in t[1:-1]:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch in "(<[" and 1 or 0
            depth -= ch in ")>]" and 1 or 0
            cur += ch
        parts.append(cur)
        return "tuple", parts
    if t.startswith("tensor<") and t.endswith(">"):
        return "tensor", t[7:-1] or "?"
    return "primitive", t


_TENSOR_DTYPES = {"scalar": np.float32, "integer": np.int32, "logical": np.bool_}


def _convert(lit: _Lit, type_str: str, pname: str):
    kind, inner = _split_type(type_str)
    if kind == "tensor":
        return _tensor_value(lit, inner, pname)
    if kind == "array":
        if lit.kind != "array":
            raise NNEFError(f"argument '{pname}' expects {type_str}, found {_describe(lit)}", lit.pos)
        return [_convert(item, inner, pname) for item in lit.value]
    if kind == "tuple":
        if lit.kind != "tuple" or len(lit.value) != len(inner):
            raise NNEFError(f"argument '{pname}' expects {type_str}, found {_describe(lit)}", lit.pos)
        return tuple(_convert(item, t, pname) for item, t in zip(lit.value, inner))
    if inner == "?":
        if lit.kind in ("array", "tuple"):
            raise NNEFError(f"argument '{pname}' expects a single literal, found {_describe(lit)}", lit.pos)
        return lit.value
    if lit.kind != inner:
        hint = " (write it with a decimal point, e.g. 1.0)" if inner == "scalar" and lit.kind == "integer" else ""
        raise NNEFError(f"argument '{pname}' expects {inner}, found {_describe(lit)}{hint}", lit.pos)
    return lit.value


def _describe(lit: _Lit) -> str:
    if lit.kind in ("array", "tuple"):
        return f"an {lit.kind} literal" if lit.kind == "array" else "a tuple literal"
    if lit.kind == "logical":
        return f"logical literal {str(lit.value).lower()}"
    return f"{lit.kind} literal {lit.value!r}" if lit.kind != "string" else f"string '{lit.value}'"


def _tensor_value(lit: _Lit, item: str, pname: str) -> np.ndarray:
    """A literal or rectangular nested array literal as a numpy array of the tensor's item type."""
    flat: list[_Lit] = []
    shape = _array_shape(lit, pname, flat)
    kinds = {x.kind for x in flat}
    if item == "?":
        if len(kinds) > 1:
            raise NNEFError(f"argument '{pname}' mixes {' and '.join(sorted(kinds))} items", lit.pos)
        item = kinds.pop() if kinds else "scalar"
    if item not in _TENSOR_DTYPES:
        raise NNEFError(f"argument '{pname}' has unsupported tensor type tensor<{item}>", lit.pos)
    for x in flat:
        if x.kind != item:
            hint = " (write it with a decimal point, e.g. 1.0)" if item == "scalar" and x.kind == "integer" else ""
            raise NNEFError(f"argument '{pname}' expects tensor<{item}>: {_describe(x)} cannot be cast to "
                            f"tensor<{item}>{hint}", x.pos)
    dtype = _TENSOR_DTYPES[item]
    if item == "integer":
        info = np.iinfo(np.int32)
        for x in flat:
            if not info.min <= x.value <= info.max:
                raise NNEFError(f"integer {x.value} of argument '{pname}' does not fit 32 bits", x.pos)
    return np.array([x.value for x in flat], dtype=dtype).reshape(shape)


def _array_shape(lit: _Lit, pname: str, flat: list) -> tuple[int, ...]:
    if lit.kind == "tuple":
        raise NNEFError(f"argument '{pname}' expects a tensor literal, found a tuple literal", lit.pos)
    if lit.kind != "array":
        flat.append(lit)
        return ()
    if not lit.value:
        raise NNEFError(f"argument '{pname}': an empty array is not a tensor value", lit.pos)
    shapes = [_array_shape(x, pname, flat) for x in lit.value]
    for s, x in zip(shapes, lit.value):
        if s != shapes[0]:
            raise NNEFError(f"argument '{pname}' must not be a jagged nested array: item shape {list(s)} "
                            f"differs from {list(shapes[0])}", x.pos)
    return (len(shapes),) + shapes[0]


# --------------------------------------------------- custom fragment specs ----
def _signature_of(spec) -> Optional[list[tuple[str, str, Any]]]:
    """Normalise a fragment spec; None when it cannot be a quantization fragment (first param not a tensor)."""
    if isinstance(spec, (list, tuple)):
        sig = [(str(p), str(t), d) for p, t, d in spec]
    else:   # ast.Fragment (duck-typed: .params with .name, .type, .default)
        try:
            sig = [(p.name, _type_string(p.type), _ast_default(p.default)) for p in spec.params]
        except (NNEFError, AttributeError, TypeError):
            return None     # not literal-only: the semantic checker reports bad defaults itself
    if not sig or _split_type(sig[0][1])[0] != "tensor":
        return None
    return sig


def _type_string(t) -> str:
    name = type(t).__name__
    if name == "PrimitiveType":
        return t.name
    if name == "TensorType":
        return f"tensor<{t.item.name if t.item is not None else ''}>"
    if name == "ArrayType":
        return _type_string(t.item) + "[]"
    if name == "TupleType":
        return "(" + ",".join(_type_string(i) for i in t.items) + ")"
    return str(t)


def _ast_default(expr):
    """A literal default expression of an ast.Param as a Python value (None when absent)."""
    if expr is None:
        return _REQUIRED
    name = type(expr).__name__
    if name == "Literal":
        return expr.value
    if name == "UnaryOp" and expr.op == "-":
        return -_ast_default(expr.operand)
    if name == "ArrayExpr":
        return [_ast_default(i) for i in expr.items]
    if name == "TupleExpr":
        return tuple(_ast_default(i) for i in expr.items)
    raise NNEFError("fragment parameter default must be a literal", getattr(expr, "pos", None))


# ------------------------------------------------------------- attaching ----
def attach_quantization(graph, quant: dict, *, realign_flat: bool = False) -> None:
    """Set ``Tensor.quantization`` from parsed entries.

    Keys that name no tensor are ignored with a warning (the Khronos reader
    ignores them silently). When a tensor's shape is known, each array argument
    must broadcast against it (left-aligned); otherwise NNEFError at the entry.

    ``realign_flat`` (opt-in, ``load(..., realign_flat_quant=True)``) accepts
    what NNEF-Tools writes for TFLite models: per-channel parameters as flat
    ``[C]`` arrays for tensors whose channel axis is not axis 0 (``[1, C]``
    biases, ``[1, H, W, C]`` depthwise filters). See :func:`realign_flat_entry`.
    """
    positions = getattr(quant, "positions", {})
    errors: list[NNEFError] = []
    for key, entry in quant.items():
        tensor = graph.tensors.get(key)
        pos = positions.get(key)
        if tensor is None:
            warnings.warn(f"{pos or 'graph.quant'}: quantization entry for '{key}' matches no tensor "
                          f"of graph '{graph.name}' (ignored)", stacklevel=2)
            continue
        if tensor.shape is not None and realign_flat:
            entry = realign_flat_entry(key, entry, tuple(tensor.shape), pos)
        if tensor.shape is not None:
            for arg, value in entry.items():
                if isinstance(value, np.ndarray) and not _broadcasts(value.shape, tuple(tensor.shape)):
                    errors.append(NNEFError(
                        f"argument '{arg}' of shape {list(value.shape)} does not broadcast against tensor "
                        f"'{key}' of shape {list(tensor.shape)} (NNEF broadcasting is left-aligned)", pos))
        tensor.quantization = entry
    if errors:
        raise NNEFError.collect(errors)


def realign_flat_entry(key: str, entry: dict, shape: tuple, pos=None) -> dict:
    """Re-align flat ``[C]`` array arguments that cannot broadcast left-aligned.

    Rule (from NNEF-Tools' TFLite output, whose per-channel axis is the last
    one of NHWC-derived filters and of ``[1, C]`` biases): a 1-D argument of
    length ``C > 1`` that does not fit axis 0 is re-shaped to
    ``[1] * axis + [C]`` when exactly ONE axis of the tensor has extent ``C``;
    with several candidate axes it is left alone (and then rejected as usual),
    since guessing could silently quantize along the wrong channels. Every
    re-aligned entry is named in a warning. Returns the (new) entry.
    """
    changed = {}
    for arg, value in entry.items():
        if not isinstance(value, np.ndarray) or value.ndim != 1 or value.shape[0] <= 1:
            continue
        c = value.shape[0]
        if _broadcasts(value.shape, shape):
            continue
        axes = [i for i, n in enumerate(shape) if n == c]
        if len(axes) == 1:
            changed[arg] = value.reshape((1,) * axes[0] + (c,))
    if not changed:
        return entry
    axis = len(next(iter(changed.values())).shape) - 1
    warnings.warn(f"{pos or 'graph.quant'}: quantization entry '{key}': flat per-channel "
                  f"{'/'.join(changed)} of length {shape[axis]} does not broadcast against shape "
                  f"{list(shape)} (NNEF aligns on the left); re-aligned to axis {axis} "
                  f"(realign_flat_quant)", stacklevel=3)
    out = dict(entry)
    out.update(changed)
    return out


def _broadcasts(param: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    if len(param) > len(shape):
        return all(e == 1 for e in param[len(shape):]) and _broadcasts(param[:len(shape)], shape)
    return all(p == 1 or p == s for p, s in zip(param, shape))


def _left_aligned(value, rank: int) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim < rank:
        a = a.reshape(a.shape + (1,) * (rank - a.ndim))
    return a


# ----------------------------------------------------------- dequantizing ----
def dequantize(codes: np.ndarray, header, quant_entry: Optional[dict], *, file: Optional[str] = None,
               name: Optional[str] = None) -> np.ndarray:
    """Real (float32) values of quantized codes read from a ``.dat`` file (item types 2/3).

    Zero-point entries: ``(q - zero_point) * scale``. Min/max entries
    (``min_max_linear_quantize``, ``linear_quantize``): signed codes are first
    shifted by ``2^(bits-1) - (symmetric ? 1 : 0)``, then mapped as
    ``q * (max - min) / r + min`` with ``r = 2^bits - 1 - (signed && symmetric ? 1 : 0)``.
    Parameters broadcast left-aligned (a ``[C]`` array varies along axis 0).
    Without an entry, the deprecated min/max stored in the header (pre-1.0.3
    files) are used with the legacy linear formula.
    """
    pos = SourcePos(file, offset=48)
    what = f"tensor '{name}'" if name else "tensor"
    rank = codes.ndim
    q = codes.astype(np.float64)
    signed = bool(getattr(header, "is_signed", codes.dtype.kind == "i"))
    if not quant_entry:
        params = getattr(header, "quant_params", None)
        if params is None:
            raise NNEFError(f"{what} holds quantized codes but has no quantization entry", pos)
        lo, hi = params
        bits = header.bits
        if signed:
            q = q + 2.0 ** (bits - 1)
        return (q / (2.0 ** bits - 1) * (hi - lo) + lo).astype(np.float32)
    op = quant_entry.get("op-name")
    if "signed" in quant_entry and bool(quant_entry["signed"]) != signed:
        raise NNEFError(f"{what} stores {'signed' if signed else 'unsigned'} codes but its quantization entry "
                        f"says signed = {str(bool(quant_entry['signed'])).lower()}", pos)
    try:
        if op == "zero_point_linear_quantize":
            zp = _left_aligned(quant_entry["zero_point"], rank).astype(np.float64)
            scale = _left_aligned(quant_entry["scale"], rank).astype(np.float64)
            _check_broadcast({"zero_point": zp, "scale": scale}, codes.shape, what, pos)
            return ((q - zp) * scale).astype(np.float32)
        if op in ("min_max_linear_quantize", "linear_quantize"):
            bits = int(quant_entry["bits"])
            symmetric = bool(quant_entry.get("symmetric", False))
            lo = _left_aligned(quant_entry["min"], rank).astype(np.float64)
            hi = _left_aligned(quant_entry["max"], rank).astype(np.float64)
            _check_broadcast({"min": lo, "max": hi}, codes.shape, what, pos)
            if signed:
                q = q + (2.0 ** (bits - 1) - (1 if symmetric else 0))
            r = 2.0 ** bits - 1 - (1 if (signed and symmetric) else 0)
            return (q * ((hi - lo) / r) + lo).astype(np.float32)
    except KeyError as e:
        raise NNEFError(f"quantization entry of {what} lacks argument {e}", pos) from None
    raise NNEFError(f"cannot dequantize stored codes of {what} with '{op}'; expected a "
                    f"zero_point_linear_quantize or min_max_linear_quantize entry", pos)


def _check_broadcast(params: dict, shape: tuple, what: str, pos: SourcePos) -> None:
    for arg, value in params.items():
        if value.ndim > len(shape) or not _broadcasts(value.shape, shape):
            raise NNEFError(f"quantization argument '{arg}' of shape {list(value.shape)} does not broadcast "
                            f"against {what} of shape {list(shape)}", pos)
