"""How a tract / torch-to-nnef document is made checkable as NNEF 1.0.5 (``extensions=('tract',)``).

Why: tract accepts constructs NNEF does not, and torch-to-nnef writes them. Each rewrite
below keeps tract's meaning and is done on the syntax tree, before the semantic checker:

* ``tract_core_external(shape, datum_type)`` -> ``external<type>(shape)``;
* ``tract_core_cast(x, to)`` gets ``to``'s NNEF type as explicit generic type, so the
  checker knows the result type (a cast to 'f32' may feed a scalar-only parameter);
* attributes passed by position get their names; a lone literal passed to an array
  attribute (``softmax(x, 3)``) becomes a one-item array; arrays of arrays passed to
  tuple-array attributes (``padding = [[0, 0], [2, 2]]``) become arrays of tuples;
  named arguments an operation does not take are ignored (tract ignores them);
* literal arrays in tensor positions become ``constant``s;
* a flat ``[C]`` conv/deconv bias and tract's ``[C_out, C_in/G, k..]`` deconv filter go
  through internal helper operations that shape them as NNEF expects;
* ``linear`` is expanded to its definition (``matmul(transposeB) + bias``), which
  batches rank-3 operands as tract does;
* document fragments named like standard operations are renamed ``<name>_tract_doc``;
* identical repeated graph statements are dropped;
* integer literals that reach scalar-only parameters through generic operations become
  float literals;
* (:func:`prepare_document`, needs the container and shapes) one-element variables used as
  attributes are replaced by their values, and ``tract_core_scan`` loops are unrolled
  (:mod:`.tract_scan`).
"""
from __future__ import annotations

from dataclasses import replace

from ..errors import NNEFError
from . import ast
from .extensions import DATUM_TYPES, ExtensionSet, declared_fragments, shape_functions


def _literal_value(expr):
    return getattr(expr, "value", None)


def _holds_tensor(t) -> bool:
    if isinstance(t, ast.TensorType):
        return True
    if isinstance(t, ast.ArrayType):
        return _holds_tensor(t.item)
    if isinstance(t, ast.TupleType):
        return any(_holds_tensor(i) for i in t.items)
    return False


def parameter_lists(doc: ast.Document, sets) -> dict:
    """op name -> [(param name, is attribute)] for the standard, extension and document fragments."""
    from .stdlib import standard_fragments
    frags = dict(standard_fragments())
    for s in sets:
        frags.update({f.name: f for f in declared_fragments(s.fragment_file)})
    frags.update({f.name: f for f in doc.fragments})
    return {name: [(p.name, not _holds_tensor(p.type), isinstance(p.type, ast.ArrayType),
                    isinstance(p.type, ast.ArrayType) and isinstance(p.type.item, ast.TupleType),
                    p.type)
                   for p in f.params] for name, f in frags.items()}


def map_invocations(expr, fn):
    """``expr`` with every Invocation inside it (innermost first) replaced by ``fn(invocation)``."""
    if isinstance(expr, ast.Invocation):
        args = [replace(a, value=map_invocations(a.value, fn)) for a in expr.args]
        return fn(replace(expr, args=args))
    if isinstance(expr, (ast.ArrayExpr, ast.TupleExpr)):
        return replace(expr, items=[map_invocations(i, fn) for i in expr.items])
    if isinstance(expr, ast.UnaryOp):
        return replace(expr, operand=map_invocations(expr.operand, fn))
    if isinstance(expr, ast.BinaryOp):
        return replace(expr, left=map_invocations(expr.left, fn), right=map_invocations(expr.right, fn))
    if isinstance(expr, ast.IfElse):
        return replace(expr, cond=map_invocations(expr.cond, fn), then=map_invocations(expr.then, fn),
                       otherwise=map_invocations(expr.otherwise, fn))
    if isinstance(expr, ast.Subscript):
        return replace(expr, base=map_invocations(expr.base, fn),
                       **{k: map_invocations(getattr(expr, k), fn) for k in ("index", "begin", "end")
                          if getattr(expr, k) is not None})
    if isinstance(expr, ast.Builtin):
        return replace(expr, arg=map_invocations(expr.arg, fn))
    if isinstance(expr, ast.Comprehension):
        its = [replace(i, iterable=map_invocations(i.iterable, fn)) for i in expr.iterators]
        return replace(expr, iterators=its, body=map_invocations(expr.body, fn),
                       cond=None if expr.cond is None else map_invocations(expr.cond, fn))
    return expr


def map_document(doc: ast.Document, fn) -> ast.Document:
    """Apply :func:`map_invocations` to every right-hand side of the graph and fragment bodies."""
    def body(stmts):
        return [replace(st, rvalue=map_invocations(st.rvalue, fn)) for st in stmts]
    frags = [f if f.body is None else replace(f, body=body(f.body)) for f in doc.fragments]
    graph = None if doc.graph is None else replace(doc.graph, body=body(doc.graph.body))
    return replace(doc, fragments=frags, graph=graph)


def _name_positional_attributes(params: dict):
    """tract reads ``softmax(x, 3)`` / ``leaky_relu(x, 0.1)``: NNEF wants attributes by name,
    and an array attribute given one literal item (``3``) as that array (``[3]``)."""
    def fn(inv):
        plist = params.get(inv.op)
        if plist is None:
            return inv
        index = {p[0]: p for p in plist}
        args = []
        for i, a in enumerate(inv.args):
            if a.name is None and i < len(plist) and plist[i][1]:
                a = replace(a, name=plist[i][0])
            if a.name is not None and a.name not in index:
                continue        # tract ignores named arguments the operation does not take
            p = index.get(a.name) if a.name is not None else (plist[i] if i < len(plist) else None)
            if p is not None and p[1] and p[2] and _is_literal(a.value):
                a = replace(a, value=ast.ArrayExpr([a.value], a.value.pos))
            if p is not None and not p[1] and isinstance(a.value, ast.ArrayExpr):
                a = replace(a, value=_array_constant(a.value))
            if p is not None and p[3] and isinstance(a.value, ast.ArrayExpr):
                # tract reads padding = [[0, 0], [2, 2]] as NNEF's [(0, 0), (2, 2)]
                a = replace(a, value=replace(a.value, items=[
                    ast.TupleExpr(i.items, i.pos) if isinstance(i, ast.ArrayExpr) else i
                    for i in a.value.items]))
            args.append(a)
        if inv.op in _BIASED and len(args) > 2 and args[2].name in (None, "bias") \
                and isinstance(args[2].value, ast.Name):
            # tract accepts a flat [C] bias; NNEF wants [1, C]: reshaped once shapes are known
            wrapped = ast.Invocation(CHANNEL_BIAS, [ast.Argument(args[2].value, None, args[2].pos)],
                                     None, args[2].pos)
            args[2] = replace(args[2], value=wrapped)
        if inv.op == "deconv" and len(args) > 1 and args[1].name in (None, "filter") \
                and isinstance(args[1].value, ast.Name):
            groups = next((a.value for a in args if a.name == "groups"), ast.Literal(1, "integer"))
            if isinstance(groups, ast.Literal):
                # tract's deconv filter is [C_out, C_in / G, ...]; NNEF's is [C_in, C_out / G, ...]
                wrapped = ast.Invocation(DECONV_FILTER, [ast.Argument(args[1].value, None, args[1].pos),
                                                         ast.Argument(groups, "groups", args[1].pos)],
                                         None, args[1].pos)
                args[1] = replace(args[1], value=wrapped)
        return replace(inv, args=args)
    return fn


def _array_constant(e):
    """tract takes a literal array where a tensor is expected (``unsqueeze([0.25], axes = [0])``);
    NNEF spells that ``constant<scalar>(shape = [1], value = [0.25])``."""
    shape, leaves, node = [], [], e
    while isinstance(node, ast.ArrayExpr) and node.items:
        shape.append(len(node.items))
        node = node.items[0]

    def flat(n, depth):
        if depth == len(shape):
            if not _is_literal(n) or (getattr(n, "operand", n).kind not in ("scalar", "integer")):
                raise ValueError
            leaves.append(n)
        elif isinstance(n, ast.ArrayExpr) and len(n.items) == shape[depth]:
            for i in n.items:
                flat(i, depth + 1)
        else:
            raise ValueError
    try:
        if not shape:
            return e
        flat(e, 0)
    except ValueError:
        return e        # not a rectangular numeric array: the checker reports it
    kind = "scalar" if any(getattr(v, "operand", v).kind == "scalar" for v in leaves) else "integer"
    if kind == "scalar":
        leaves = [_as_float(v) if _int_literal(v) else v for v in leaves]
    pos = e.pos
    return ast.Invocation("constant", [
        ast.Argument(ast.ArrayExpr([ast.Literal(n, "integer", pos) for n in shape], pos), "shape", pos),
        ast.Argument(ast.ArrayExpr(leaves, pos), "value", pos)], kind, pos)


DECONV_FILTER = "tract_nnef_tvm_deconv_filter"
_BIASED = frozenset({"conv", "deconv"})
CHANNEL_BIAS = "tract_nnef_tvm_channel_bias"


def _is_literal(e) -> bool:
    return isinstance(e, ast.Literal) or (isinstance(e, ast.UnaryOp) and isinstance(e.operand, ast.Literal))


def _external_and_cast(inv):
    """``tract_core_external(shape, datum_type)`` -> ``external<type>(shape)``;
    ``tract_core_cast(x, to)`` -> ``tract_core_cast<type of to>(x, to)``, so that the checker
    knows the result type (e.g. a cast to 'f32' feeding a scalar-only parameter)."""
    if inv.op == "tract_core_external":
        args = [a for a in inv.args if a.name != "datum_type"]
        dt = [a for a in inv.args if a.name == "datum_type"]
        nnef_type = "scalar"
        if dt:
            value = _literal_value(dt[0].value)
            if value not in DATUM_TYPES:
                raise NNEFError(f"tract_core_external: unsupported datum_type {value!r} "
                                f"(expected one of {', '.join(DATUM_TYPES)})", dt[0].pos or inv.pos)
            nnef_type = DATUM_TYPES[value]
        return replace(inv, op="external", args=args, dtype=nnef_type)
    if inv.op == "tract_core_cast" and inv.dtype is None:
        to = [a for a in inv.args if a.name == "to"] or inv.args[1:2]
        value = _literal_value(to[0].value) if to else None
        if value not in DATUM_TYPES:
            raise NNEFError(f"tract_core_cast: 'to' must be a literal datum type, one of "
                            f"{', '.join(DATUM_TYPES)}; got {value!r}",
                            (to[0].pos if to else None) or inv.pos)
        return replace(inv, dtype=DATUM_TYPES[value])
    if inv.op == "linear":
        return _linear_as_matmul(inv)
    return inv


def _linear_as_matmul(inv):
    """tract's ``linear`` takes batched operands (torch-to-nnef writes rank-3 ones for
    ``nn.Linear`` on [B, T, C]); NNEF's shape rules allow rank 2 only. Its definition,
    ``matmul(input, filter, transposeB = true) + bias``, means the same for rank 2 and
    batches like tract for more, so tract documents get that."""
    names = ["input", "filter", "bias"]
    vals = {}
    for i, a in enumerate(inv.args):
        key = a.name or (names[i] if i < 3 else None)
        if key not in names:
            return inv        # let the checker report the bad argument
        vals[key] = a.value
    if "input" not in vals or "filter" not in vals:
        return inv
    pos = inv.pos
    mm = ast.Invocation("matmul", [ast.Argument(vals["input"], None, pos),
                                   ast.Argument(vals["filter"], None, pos),
                                   ast.Argument(ast.Literal(True, "logical", pos), "transposeB", pos)],
                        None, pos)
    bias = vals.get("bias", ast.Literal(0.0, "scalar", pos))
    return ast.Invocation("add", [ast.Argument(mm, None, pos), ast.Argument(bias, None, pos)], None, pos)


def rewrite_document(doc: ast.Document, sets: list[ExtensionSet]) -> ast.Document:
    """Make a tract document checkable as NNEF (idempotent): attributes passed by position get
    their names, ``tract_core_external`` becomes ``external``, ``tract_core_cast`` gets its result
    type; metadata fragments are dropped."""
    if not sets or doc.graph is None:
        return doc
    skip = frozenset().union(*(s.skip_fragments for s in sets))
    doc = replace(doc, fragments=[f for f in doc.fragments if f.name not in skip])
    doc = _drop_repeated_statements(_rename_standard_redefinitions(doc))
    params = parameter_lists(doc, sets)
    name_attrs = _name_positional_attributes(params)
    doc = map_document(doc, lambda inv: _external_and_cast(name_attrs(inv)))
    doc = _array_lvalues(doc, _array_results(doc, sets))
    return _promote_integer_literals(doc, params)


def _array_results(doc: ast.Document, sets) -> frozenset:
    """Names of the operations whose one result is an array (``split``, ``unstack``, ...)."""
    from .stdlib import standard_fragments
    frags = dict(standard_fragments())
    for s in sets:
        frags.update({f.name: f for f in declared_fragments(s.fragment_file)})
    frags.update({f.name: f for f in doc.fragments})
    return frozenset(n for n, f in frags.items()
                     if len(f.results) == 1 and isinstance(f.results[0].type, ast.ArrayType))


def _array_lvalues(doc: ast.Document, array_ops: frozenset) -> ast.Document:
    """tract takes ``q, k, v = unstack(x, axis = 0);`` (a tuple of names for an array result);
    NNEF wants ``[q, k, v] = ...``."""
    def fix(stmts):
        out = []
        for st in stmts:
            rv, lv = st.rvalue, st.lvalue
            if isinstance(lv, ast.TupleExpr) and isinstance(rv, ast.Invocation) and rv.op in array_ops:
                st = replace(st, lvalue=ast.ArrayExpr(lv.items, lv.pos))
            out.append(st)
        return out
    frags = [f if f.body is None else replace(f, body=fix(f.body)) for f in doc.fragments]
    return replace(doc, fragments=frags, graph=replace(doc.graph, body=fix(doc.graph.body)))


def _int_literal(e) -> bool:
    if isinstance(e, ast.UnaryOp) and e.op == "-":
        e = e.operand
    return isinstance(e, ast.Literal) and e.kind == "integer"


def _as_float(e):
    if isinstance(e, ast.UnaryOp):
        return ast.Literal(-float(e.operand.value), "scalar", e.pos)
    return ast.Literal(float(e.value), "scalar", e.pos)


def _promote_integer_literals(doc: ast.Document, params: dict) -> ast.Document:
    """torch-to-nnef writes float constants as integer literals fed through generic operations
    (``c = unsqueeze(-1, axes = [0, 1]); y = max(x, c);``, ``r = tract_core_range(0, 6, step = 1)``
    added to a float tensor); tract converts them on use. A graph statement whose value
    operands are all integer literals (or such statements' results) gets float literals when
    its result reaches a scalar-only parameter, so that NNEF's types agree."""
    body = doc.graph.body
    def value_params(inv):
        plist = params.get(inv.op) or []
        kinds = {p[0]: p[4] for p in plist}
        out = []
        for i, a in enumerate(inv.args):
            t = kinds.get(a.name) if a.name else (plist[i][4] if i < len(plist) else None)
            generic = (isinstance(t, ast.TensorType) and t.item is not None and t.item.name == "?") \
                or (isinstance(t, ast.PrimitiveType) and t.name == "?")
            out.append(generic)
        return out

    derived = {}          # name -> statement index
    for k, st in enumerate(body):
        rv = st.rvalue
        if not (isinstance(st.lvalue, ast.Name) and isinstance(rv, ast.Invocation)):
            continue
        vals = [a.value for a, g in zip(rv.args, value_params(rv)) if g]
        if vals and all(_int_literal(v) or (isinstance(v, ast.Name) and v.name in derived)
                        for v in vals):
            derived[st.lvalue.name] = k
    if not derived:
        return doc
    marked = set()

    def mark(name):
        if name in marked:
            return
        marked.add(name)
        rv = body[derived[name]].rvalue
        for a, g in zip(rv.args, value_params(rv)):
            if g and isinstance(a.value, ast.Name) and a.value.name in derived:
                mark(a.value.name)

    def scalar_uses(inv):
        plist = params.get(inv.op) or []
        kinds = {p[0]: p[4] for p in plist}
        for i, a in enumerate(inv.args):
            t = kinds.get(a.name) if a.name else (plist[i][4] if i < len(plist) else None)
            if isinstance(t, ast.TensorType) and t.item is not None and t.item.name == "scalar" \
                    and isinstance(a.value, ast.Name) and a.value.name in derived:
                mark(a.value.name)
        return inv

    for st in body:
        map_invocations(st.rvalue, scalar_uses)
    if not marked:
        return doc
    new_body = list(body)
    for name in marked:
        k = derived[name]
        rv = body[k].rvalue
        args = [replace(a, value=_as_float(a.value)) if g and _int_literal(a.value) else a
                for a, g in zip(rv.args, value_params(rv))]
        new_body[k] = replace(body[k], rvalue=replace(rv, args=args))
    return replace(doc, graph=replace(doc.graph, body=new_body))


def _rename_standard_redefinitions(doc: ast.Document) -> ast.Document:
    """torch-to-nnef defines its own ``silu``/``elu``/``selu``/... fragments; tract lets a
    document fragment shadow a standard operation, NNEF does not. The document's fragment
    (what tract runs) is kept under the name ``<name>_tract_doc`` and its invocations follow."""
    from .stdlib import standard_fragments
    std = standard_fragments()
    renamed = {f.name: f"{f.name}_tract_doc" for f in doc.fragments
               if f.name in std and f.body is not None}
    if not renamed:
        return doc
    doc = replace(doc, fragments=[replace(f, name=renamed[f.name]) if f.name in renamed else f
                                  for f in doc.fragments])
    return map_document(doc, lambda inv: replace(inv, op=renamed[inv.op]) if inv.op in renamed else inv)


def _without_pos(node):
    """A comparable form of an AST node that ignores source positions."""
    if isinstance(node, list):
        return tuple(_without_pos(n) for n in node)
    if hasattr(node, "__dataclass_fields__"):
        return (type(node).__name__,) + tuple(
            (k, _without_pos(getattr(node, k))) for k in node.__dataclass_fields__ if k != "pos")
    return node


def _drop_repeated_statements(doc: ast.Document) -> ast.Document:
    """torch-to-nnef may write the same graph statement twice (``x_as_f32 = tract_core_cast(x,
    to = 'f32');`` once per use); tract accepts it. A repeat of an identical assignment computes
    the same value again, so it is dropped; a different re-assignment is still an error."""
    seen = {}
    body = []
    for st in doc.graph.body:
        if isinstance(st.lvalue, ast.Name):
            key = _without_pos(st.rvalue)
            if seen.get(st.lvalue.name) == key:
                continue
            seen.setdefault(st.lvalue.name, key)
        body.append(st)
    if len(body) == len(doc.graph.body):
        return doc
    return replace(doc, graph=replace(doc.graph, body=body))


def _inline_variable_attributes(doc: ast.Document, sets, box) -> ast.Document:
    """tract takes attributes from constant tensors: ``epsilon = var_1e_05`` with
    ``var_1e_05 = variable<scalar>(label = 'var_1e_05', shape = [])``, or
    ``scales = resize_scales`` with a ``[4]`` variable. NNEF wants literals, so the values
    are read from the variables' .dat files and written in place of the identifiers: one
    element for a primitive attribute, a 1-D variable for an array attribute."""
    if box is None or box.is_single_file:
        return doc
    from . import tensorfile
    consts = {}
    for st in doc.graph.body:
        rv = st.rvalue
        if not (isinstance(st.lvalue, ast.Name) and isinstance(rv, ast.Invocation)
                and rv.op == "variable"):
            continue
        args = {a.name: a.value for a in rv.args}
        shape, label = args.get("shape"), _literal_value(args.get("label"))
        if not (isinstance(shape, ast.ArrayExpr) and isinstance(label, str) and len(shape.items) <= 1):
            continue
        member = label.lstrip("/") + ".dat"
        if box.has(member):
            consts[st.lvalue.name] = member
    if not consts:
        return doc
    params = parameter_lists(doc, sets)
    cache = {}
    cast = {"scalar": float, "integer": int, "logical": bool}

    def values(name):
        if name not in cache:
            member = consts[name]
            array, _ = tensorfile.read_tensor(box.buffer(member), name=box.display_name(member))
            cache[name] = array.reshape(-1).tolist()
        return cache[name]

    def literal(v, ptype, pos):
        kind = ptype.name if isinstance(ptype, ast.PrimitiveType) and ptype.name in cast else "scalar"
        return ast.Literal(cast[kind](v), kind, pos)

    def fn(inv):
        types = {p[0]: p[4] for p in params.get(inv.op, []) if p[1]}     # attributes only
        args = []
        for a in inv.args:
            t = types.get(a.name)
            if t is not None and isinstance(a.value, ast.Name) and a.value.name in consts:
                vals, pos = values(a.value.name), a.value.pos
                if isinstance(t, ast.ArrayType):
                    a = replace(a, value=ast.ArrayExpr([literal(v, t.item, pos) for v in vals], pos))
                elif len(vals) == 1:
                    a = replace(a, value=literal(vals[0], t, pos))
            args.append(a)
        return replace(inv, args=args)

    graph = replace(doc.graph, body=[replace(st, rvalue=map_invocations(st.rvalue, fn))
                                     for st in doc.graph.body])
    return replace(doc, graph=graph)


def prepare_document(doc: ast.Document, sets, box=None, input_shapes=None) -> ast.Document:
    """Rewrites that need more than the document (called by the loader before checking):
    attribute variables replaced by their values (needs the container ``box``) and
    ``tract_core_scan`` loops unrolled (needs the shapes, see :mod:`.tract_scan`)."""
    if not sets or doc.graph is None:
        return doc
    doc = _inline_variable_attributes(rewrite_document(doc, sets), sets, box)
    from .tract_scan import PROBE, unroll_scans

    def check_probe(probe_doc, probe_shape):
        from . import semantics, shapes
        graph, _ = semantics.build_graph(probe_doc, extensions=tuple(s.name for s in sets))
        custom = {**shape_functions(sets), PROBE: probe_shape}
        shapes.infer_shapes(graph, custom_shapes=custom, input_shapes=input_shapes)

    return unroll_scans(doc, check_probe)
