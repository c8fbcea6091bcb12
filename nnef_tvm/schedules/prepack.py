"""Weights re-laid-out once, at compile time, instead of inside every kernel run.

A fast CPU convolution wants its weights in a kernel-specific order (a tile
of output channels innermost, see :mod:`.conv_channel_cpu`). Copying them into that
order inside the kernel costs, for the 1x1 convolutions of a small feature
map, as much as the arithmetic. TVM 0.27 has the machinery to do the copy
once; this module ties it to our pipeline and schedules:

1. :func:`attach_layout_free_buffers` (a module pass right after FuseTIR)
   marks, on each fused PrimFunc, the parameters that receive a *weight*: a
   bound ``relax.Constant`` (the default import) or a ``main`` parameter past
   the model inputs (``keep_params=True``). The mark is the PrimFunc attribute
   ``layout_free_buffers`` (parameter indices) -- the same contract
   MetaSchedule's ``RewriteLayout`` postproc reads, so tuned kernels get
   prepacked weights too. Unlike TVM's ``AttachAttrLayoutFreeBuffers`` it keeps
   the kernels' names and leaves functions without a weight untouched (their
   tuning workload hash stays what it was).
2. A schedule packs such a weight with :func:`pack_weight_once`: a traced
   ``cache_read`` at the root + ``transform_layout`` + the block annotation
   ``meta_schedule.layout_rewrite_preproc``. The kernel stays correct on its
   own (the copy simply runs first), which is how the per-kernel tests run it.
3. :func:`prepack_passes` (the pipeline's ``prepack`` phase, after scheduling):
   ``SplitLayoutRewritePreproc`` moves each annotated copy into its own
   PrimFunc (``<kernel>_weight_prepack``) called before the compute kernel
   (which keeps its name; its weight parameter now arrives packed), then
   ``FoldConstant`` runs the copy at compile time when the weight is a bound
   constant. With ``keep_params=True`` the weights are runtime arguments, so
   the copy stays a separate (cheap, once per call) kernel; we do not use
   ``LiftTransformParams``, which would change the compiled module's calling
   convention (a ``main_transform_params`` the caller must run first).
"""
from __future__ import annotations

from typing import Optional

LAYOUT_FREE_ATTR = "layout_free_buffers"
PREPROC_ANNOTATION = "meta_schedule.layout_rewrite_preproc"


def layout_free_params(func) -> Optional[set]:
    """Indices of ``func``'s parameters marked layout free, or None when unmarked."""
    attrs = func.attrs
    if attrs is None or LAYOUT_FREE_ATTR not in attrs:
        return None
    return {int(i) for i in attrs[LAYOUT_FREE_ATTR]}


def param_index(func, buffer_var) -> Optional[int]:
    """Which parameter of ``func`` is ``buffer_var`` (None: an internal buffer)."""
    for i, p in enumerate(func.params):
        if p.same_as(buffer_var):
            return i
    return None


def weight_is_layout_free(sch, buffer_var) -> bool:
    """True when the scheduled function may pack ``buffer_var`` once, outside the kernel."""
    func = sch.mod["main"]
    marked = layout_free_params(func)
    idx = param_index(func, buffer_var)
    return marked is not None and idx is not None and idx in marked


def pack_weight_once(sch, block, read_index: int, index_map):
    """Read operand ``read_index`` of ``block`` through a packed copy laid out by ``index_map``.

    Every step is a traced schedule primitive (a MetaSchedule record replays
    it). Returns the copy block, left at the root with the preprocessing
    annotation that ``SplitLayoutRewritePreproc`` looks for.
    """
    packed = sch.cache_read(block, read_index, "global")
    sch.transform_layout(packed, ("write", 0), index_map)
    sch.annotate(packed, PREPROC_ANNOTATION, 1)
    return packed


def _num_inputs(func) -> Optional[int]:
    attrs = func.attrs
    if attrs is None:
        return None
    if "num_input" in attrs:
        return int(attrs["num_input"])
    if "nnef_input_names" in attrs:
        return len(attrs["nnef_input_names"])
    return None


def _layout_free_call_args(func) -> dict:
    """{PrimFunc GlobalVar name: set of arg positions holding weights, over all its calls}."""
    import tvm
    from tvm import relax
    from tvm.ir.expr import Constant          # relax constants (TVM 0.27 moved the class)
    call_tir = tvm.ir.Op.get("relax.call_tir")
    weights = set()
    n_in = _num_inputs(func)
    if n_in is not None:
        weights |= {p for p in list(func.params)[n_in:]}
    found: dict = {}
    body = func.body
    blocks = body.blocks if isinstance(body, relax.SeqExpr) else []
    for block in blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, Constant):
                weights.add(binding.var)
                continue
            if not (isinstance(value, relax.Call) and value.op.same_as(call_tir)):
                continue
            gv = value.args[0]
            args = value.args[1].fields if isinstance(value.args[1], relax.Tuple) else []
            here = {i for i, a in enumerate(args)
                    if isinstance(a, Constant) or a in weights}
            name = gv.name_hint
            found[name] = here if name not in found else (found[name] & here)
    return found


def attach_layout_free_buffers():
    """Module pass: mark each fused PrimFunc's weight parameters (see module docstring)."""
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name="NNEFAttachLayoutFreeBuffers")
    def apply(mod, _ctx):
        found: dict = {}
        for _gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                for name, idx in _layout_free_call_args(func).items():
                    found[name] = idx if name not in found else (found[name] & idx)
        updates = {}
        for gv, func in mod.functions_items():
            if not isinstance(func, tvm.tirx.PrimFunc):
                continue
            idx = found.get(gv.name_hint)
            if not idx or layout_free_params(func) is not None:
                continue
            updates[gv] = func.with_attr(LAYOUT_FREE_ATTR, sorted(idx))
        for gv, func in updates.items():
            mod[gv] = func
        return mod
    return apply


def _has_preproc(func) -> bool:
    # TVM 0.27 exposes no TIR visitor to Python; the printed annotation is unambiguous
    return PREPROC_ANNOTATION in func.script()


def _placeholder():
    """A trivial block-structured PrimFunc (stands in for kernels the split must not visit)."""
    from tvm import te
    out = te.compute((1,), lambda i: te.const(0, "float32"), name="placeholder")
    return te.create_prim_func([out])


def split_layout_rewrite_preproc():
    """``SplitLayoutRewritePreproc`` applied only to the kernels that carry a packing block.

    TVM's pass visits every PrimFunc and aborts on one whose body is not a
    root block of blocks (an extern call such as ``argsort``, hand-written
    TIR). Kernels without the annotation have nothing to split, so they are
    swapped for a placeholder while the pass runs and put back afterwards.
    """
    import tvm
    from tvm.relax import transform as T

    @tvm.transform.module_pass(opt_level=0, name="NNEFSplitLayoutRewritePreproc")
    def apply(mod, _ctx):
        prims = [(gv, f, _has_preproc(f)) for gv, f in mod.functions_items()
                 if isinstance(f, tvm.tirx.PrimFunc)]
        if not any(has for _, _, has in prims):
            return mod
        originals = {}
        work = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
        for gv, f, has in prims:
            if not has:
                originals[gv.name_hint] = f
                work[gv] = _placeholder()
        out = T.SplitLayoutRewritePreproc()(work)
        for gv, _ in out.functions_items():
            if gv.name_hint in originals:
                out[gv] = originals[gv.name_hint]
        return _keep_kernel_names(out)
    return apply


SPLIT_SUFFIX = "_prepacked"


def _keep_kernel_names(mod):
    """Give each split compute kernel ``<k>_prepacked`` its fused name ``<k>`` back.

    The kernel symbols are what profiles show and what the fusion report maps
    to NNEF operations (by the fused-function name), so splitting the packing
    copy out must not rename the kernel. The original ``<k>`` is gone by now
    (the split's dead-code elimination removed it).
    """
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    present = {gv.name_hint for gv in mod.get_global_vars()}
    renamed = {}
    for gv, func in mod.functions_items():
        name = gv.name_hint
        if isinstance(func, tvm.tirx.PrimFunc) and name.endswith(SPLIT_SUFFIX):
            base = name[:-len(SPLIT_SUFFIX)]
            if base not in present:
                renamed[gv] = (base, func)
    if not renamed:
        return mod
    # GlobalVars typed by their function: a builder's add_func makes them
    bb = relax.BlockBuilder()
    renames = {gv: bb.add_func(func, base) for gv, (base, func) in renamed.items()}

    @mutator
    class _Rename(PyExprMutator):
        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            if call.args and isinstance(call.args[0], relax.GlobalVar) and \
                    call.args[0] in renames:
                call = relax.Call(call.op, [renames[call.args[0]]] + list(call.args[1:]),
                                  call.attrs, call.ty_args, call.span)
            return call

    out = tvm.IRModule({}, attrs=mod.attrs)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            out[gv] = _Rename(mod).visit_expr(func)
        else:
            out[renames.get(gv, gv)] = func
    return out


def prepack_passes() -> list:
    """Split the annotated weight copies out of the kernels, then fold the constant ones."""
    from tvm.relax import transform as T
    # DeadCodeElimination drops the folded copies' PrimFuncs (nothing calls them now)
    return [split_layout_rewrite_preproc(), T.FoldConstant(), T.DeadCodeElimination()]
