"""tract's ``tract_core_scan`` loop, unrolled into standard NNEF before checking.

Why: torch-to-nnef writes LSTM/GRU layers as a ``tract_core_scan`` over a body
fragment named by a string. Relax has no loop over sub-graphs that our
pipeline could schedule, and exported sequence lengths are static, so the
reader unrolls the loop: one invocation of the body fragment per step.

Semantics (tract's core NNEF registry): ``scan`` entries ``(param, tensor,
axis, chunk)`` feed the body, step after step, with the slice of ``tensor`` of
extent |chunk| along ``axis`` (a negative chunk walks the axis backward);
``full`` entries ``(param, tensor)`` pass the whole tensor to every step;
``state`` entries ``(param, initial, result)`` start from ``initial`` and take
the body result ``result`` of the previous step; ``output`` entries
``(result, 'full'|'last', axis, chunk)`` give the body result of every step
concatenated along ``axis`` in position order, or that of the last step.

The number of steps needs the shapes of the scanned tensors, which are known
only after shape inference, and the scan usually sits inside a fragment
(``lstm``/``gru``). So a first pass checks the document with each scan replaced
by a probe operation whose shape function records, per scan site, the step
count and the (evaluated) axes and chunks, and gives the outputs their shapes
from the states they come from. The document is then rewritten with each scan
unrolled for that count. Limits (reported, located): ``skip`` must be 0, every
output must be a state of the body, and a scan site (e.g. inside a fragment
called twice) must see one step count only.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import NNEFError
from . import ast

SCAN = "tract_core_scan"
PROBE = "tract_nnef_tvm_scan_probe"


@dataclass
class ScanSite:
    key: int
    pos: object
    body: str
    scan: list       # (param, tensor expr, axis expr, chunk expr)
    full: list       # (param, tensor expr)
    state: list      # (param, initial expr, body result name)
    output: list     # (body result name, kind, axis expr, chunk expr)


def _err(msg, node):
    return NNEFError(f"{SCAN}: {msg}", getattr(node, "pos", None))


def _string(e, what):
    if isinstance(e, ast.Literal) and e.kind == "string":
        return e.value
    raise _err(f"{what} must be a string literal", e)


def _tuples(e, n, what):
    if not isinstance(e, ast.ArrayExpr):
        raise _err(f"'{what}' must be an array literal of {n}-tuples", e)
    out = []
    for item in e.items:
        if not isinstance(item, ast.TupleExpr) or len(item.items) != n:
            raise _err(f"each '{what}' entry must be a {n}-tuple", item)
        out.append(list(item.items))
    return out


def _site(inv: ast.Invocation, key: int) -> ScanSite:
    names = ["body", "scan", "full", "state", "output", "skip"]
    args = {}
    for i, a in enumerate(inv.args):
        args[a.name or (names[i] if i < len(names) else f"#{i}")] = a.value
    for n in ("body", "scan", "output"):
        if n not in args:
            raise _err(f"missing argument '{n}'", inv)
    skip = args.get("skip")
    if skip is not None and not (isinstance(skip, ast.Literal) and skip.value == 0):
        raise _err("only skip = 0 is supported", skip)
    scan = [(_string(t[0], "scan parameter name"), t[1], t[2], t[3])
            for t in _tuples(args["scan"], 4, "scan")]
    full = [(_string(t[0], "full parameter name"), t[1])
            for t in _tuples(args.get("full", ast.ArrayExpr([])), 2, "full")]
    state = [(_string(t[0], "state parameter name"), t[1], _string(t[2], "state result name"))
             for t in _tuples(args.get("state", ast.ArrayExpr([])), 3, "state")]
    output = [(_string(t[0], "output result name"), _string(t[1], "output kind"), t[2], t[3])
              for t in _tuples(args["output"], 4, "output")]
    for o in output:
        if o[1] not in ("full", "last"):
            raise _err(f"output kind must be 'full' or 'last', got {o[1]!r}", inv)
    if not scan:
        raise _err("at least one 'scan' input is needed to know the step count", inv)
    return ScanSite(key, inv.pos, _string(args["body"], "body"), scan, full, state, output)


def _lvalue_names(lv) -> list:
    if isinstance(lv, ast.Name):
        return [lv]
    if isinstance(lv, (ast.ArrayExpr, ast.TupleExpr)):
        return [n for i in lv.items for n in _lvalue_names(i)]
    raise _err("the result of a scan must be assigned to identifiers", lv)


def _map_scans(doc: ast.Document, fn) -> ast.Document:
    """Replace each ``lvalue = tract_core_scan(...)`` statement by the list ``fn(stmt, site)``."""
    counter = [0]

    def body(stmts):
        out = []
        for st in stmts:
            rv = st.rvalue
            if isinstance(rv, ast.Invocation) and rv.op == SCAN:
                site = _site(rv, counter[0])
                counter[0] += 1
                out.extend(fn(st, site))
            else:
                out.append(st)
        return out

    frags = [f if f.body is None else replace(f, body=body(f.body)) for f in doc.fragments]
    graph = None if doc.graph is None else replace(doc.graph, body=body(doc.graph.body))
    return replace(doc, fragments=frags, graph=graph)


def has_scan(doc: ast.Document) -> bool:
    found = []
    _map_scans(doc, lambda st, site: found.append(site) or [st])
    return bool(found)


# -------------------------------------------------------------- probing ---
def _arr(items, pos):
    return ast.ArrayExpr(list(items), pos)


def _lit(v, pos):
    kind = "logical" if isinstance(v, bool) else "integer" if isinstance(v, int) else "string"
    return ast.Literal(v, kind, pos)


def _probe_statement(st, site: ScanSite):
    pos = site.pos
    names = _lvalue_names(st.lvalue)
    if len(names) != len(site.output):
        raise _err(f"{len(names)} identifiers receive {len(site.output)} outputs", st.lvalue)
    state_results = [s[2] for s in site.state]
    state_of_output = []
    for o in site.output:
        if o[0] not in state_results:
            raise _err(f"output '{o[0]}' is not a state of body '{site.body}' (nnef-tvm unrolls scans "
                       f"whose outputs are states only)", st)
        state_of_output.append(state_results.index(o[0]))
    args = [
        ast.Argument(_arr([s[1] for s in site.scan], pos), "scan", pos),
        ast.Argument(_arr([s[1] for s in site.state], pos), "states", pos),
        ast.Argument(_arr([s[2] for s in site.scan], pos), "axes", pos),
        ast.Argument(_arr([s[3] for s in site.scan], pos), "chunks", pos),
        ast.Argument(_lit(site.key, pos), "site", pos),
        ast.Argument(_arr([_lit(i, pos) for i in state_of_output], pos), "state_of_output", pos),
        ast.Argument(_arr([_lit(o[1] == "full", pos) for o in site.output], pos), "full", pos),
        ast.Argument(_arr([o[2] for o in site.output], pos), "out_axes", pos),
    ]
    return [ast.Assignment(_arr(names, st.lvalue.pos), ast.Invocation(PROBE, args, None, pos), st.pos)]


def probe_shape_function(records: dict):
    """Shape function of the probe: records (steps, axes, chunks, out_axes) per site."""
    def shape(op, shape_of):
        scans = shape_of(op.inputs["scan"])
        states = shape_of(op.inputs["states"])
        axes, chunks = list(op.attribs["axes"]), list(op.attribs["chunks"])
        steps = set()
        norm_axes = []
        for s, a, c in zip(scans, axes, chunks):
            a = a + len(s) if a < 0 else a
            if not 0 <= a < len(s):
                raise NNEFError(f"{SCAN}: scan axis {a} out of range for rank {len(s)}", op.pos)
            if c == 0 or s[a] % abs(c):
                raise NNEFError(f"{SCAN}: chunk {c} does not divide extent {s[a]} of the scanned axis",
                                op.pos)
            norm_axes.append(a)
            steps.add(s[a] // abs(c))
        if len(steps) != 1:
            raise NNEFError(f"{SCAN}: scanned inputs give different step counts {sorted(steps)}", op.pos)
        n = steps.pop()
        out_axes = list(op.attribs["out_axes"])
        key = (n, tuple(norm_axes), tuple(abs(c) for c in chunks), tuple(out_axes))
        seen = records.setdefault(op.attribs["site"], set())
        seen.add(key)
        if len(seen) > 1:
            raise NNEFError(f"{SCAN}: this scan runs with different step counts or axes in different "
                            f"invocations ({sorted(seen)}); nnef-tvm unrolls one count per scan", op.pos)
        shapes = []
        for k, full, ax in zip(op.attribs["state_of_output"], op.attribs["full"], out_axes):
            s = list(states[k])
            if full:
                ax = ax + len(s) if ax < 0 else ax
                if not 0 <= ax < len(s):
                    raise NNEFError(f"{SCAN}: output axis {ax} out of range for rank {len(s)}", op.pos)
                s[ax] *= n
            shapes.append(tuple(s))
        return [shapes]
    return shape


# ------------------------------------------------------------ unrolling ---
def _if_forward(chunk, forward, backward, pos):
    """``forward`` for a positive chunk, ``backward`` for a negative one: chosen now when the
    chunk is a literal, else an NNEF ``if`` expression evaluated when the fragment is lowered."""
    neg = isinstance(chunk, ast.UnaryOp) and chunk.op == "-"
    lit = chunk.operand if neg else chunk
    if isinstance(lit, ast.Literal) and isinstance(lit.value, int):
        return backward if (lit.value < 0) != neg else forward
    cond = ast.BinaryOp(">", chunk, ast.Literal(0, "integer", pos), pos)
    return ast.IfElse(cond, forward, backward, pos)


def _unrolled(st, site: ScanSite, record, results_of: dict) -> list:
    n, axes, chunks, out_axes = record       # chunks: magnitudes
    pos = site.pos
    if site.body not in results_of:
        raise _err(f"body fragment '{site.body}' is not defined in the document", st)
    body_results = results_of[site.body]
    prefix = f"tract_scan{site.key}_"
    stmts = []

    def assign(name, rv):
        stmts.append(ast.Assignment(ast.Name(name, pos), rv, pos))
        return ast.Name(name, pos)

    def call(op, args):
        return ast.Invocation(op, [ast.Argument(v, k, pos) for k, v in args], None, pos)

    current = [s[1] for s in site.state]
    steps = []                        # step -> {result name: Name}
    last = None
    for t in range(n):
        args = []
        for i, ((param, tensor, _, chunk), axis, c) in enumerate(zip(site.scan, axes, chunks)):
            # step t reads position t (forward) or n-1-t (negative chunk: backward); the sign
            # is the chunk expression's, evaluated per invocation when it is a parameter
            fwd, bwd = _lit(t * c, pos), _lit((n - 1 - t) * c, pos)
            begin = _if_forward(chunk, fwd, bwd, pos)
            end = _if_forward(chunk, _lit((t + 1) * c, pos), _lit((n - t) * c, pos), pos)
            sl = call("slice", [(None, tensor), ("axes", _arr([_lit(axis, pos)], pos)),
                                ("begin", _arr([begin], pos)), ("end", _arr([end], pos))])
            args.append((param, assign(f"{prefix}{t}_in{i}", sl)))
        args += [(param, tensor) for param, tensor in site.full]
        args += [(param, value) for (param, _, _), value in zip(site.state, current)]
        outs = {r: ast.Name(f"{prefix}{t}_{r}", pos) for r in body_results}
        lv = outs[body_results[0]] if len(body_results) == 1 else \
            ast.TupleExpr([outs[r] for r in body_results], pos)
        stmts.append(ast.Assignment(lv, call(site.body, args), pos))
        current = [outs[s[2]] for s in site.state]
        steps.append(outs)
        last = outs
    for name, (result, kind, _, _), ax in zip(_lvalue_names(st.lvalue), site.output, out_axes):
        if kind == "last" or n == 1:
            rv = call("copy", [(None, last[result])])
        else:
            # 'full': the steps' results in position order (reversed for a backward scan)
            items = _if_forward(site.scan[0][3], _arr([o[result] for o in steps], pos),
                                _arr([o[result] for o in reversed(steps)], pos), pos)
            rv = call("concat", [(None, items), ("axis", _lit(ax, pos))])
        stmts.append(ast.Assignment(ast.Name(name.name, name.pos), rv, pos))
    return stmts


def unroll_scans(doc: ast.Document, check_probe) -> ast.Document:
    """``doc`` with every ``tract_core_scan`` unrolled.

    ``check_probe(probe_doc, shape_fn)`` checks and shape-infers the probe
    document (with ``shape_fn`` as the probe's shape function)."""
    if not has_scan(doc):
        return doc
    probe_doc = _map_scans(doc, _probe_statement)
    records: dict = {}
    check_probe(probe_doc, probe_shape_function(records))
    results_of = {f.name: [r.name for r in f.results] for f in doc.fragments}

    def unroll(st, site):
        seen = records.get(site.key)
        if not seen:        # in a fragment never invoked: the (never converted) probe stays
            return _probe_statement(st, site)
        return _unrolled(st, site, next(iter(seen)), results_of)

    return _map_scans(doc, unroll)
