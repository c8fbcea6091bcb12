"""Winograd F(m x m, 3 x 3) convolution (schedules/winograd.py, winograd_cpu.py).

References are independent of the kernel: the 2-D identity of the transform
matrices in float64, and a float64 numpy cross-correlation written from the
NNEF ``conv`` definition (zero border, stride 1, dilation 1, one group) for
the compiled kernels. Errors are relative to max |reference|; F(4, 3) in
float32 is expected at a few 1e-6 (measured below 1e-5 at these sizes).
"""
import numpy as np
import pytest

WINO_REL_TOL = 3e-5          # F(4,3) float32, sums of up to 9 * 32 products
DIRECT_REL_TOL = 1e-5


@pytest.fixture(scope="module")
def target():
    from nnef_tvm.targets import get_target
    return get_target("x86", threads=2)


# ------------------------------------------------------------------ matrices
@pytest.mark.parametrize("m", [2, 4, 6])
def test_matrices_identity_float64(m):
    from nnef_tvm.schedules.winograd import transform_matrices
    at, g, bt = transform_matrices(m)
    alpha = m + 2
    assert at.shape == (m, alpha) and g.shape == (alpha, 3) and bt.shape == (alpha, alpha)
    rng = np.random.default_rng(m)
    for _ in range(5):
        d = rng.standard_normal((alpha, alpha))
        w = rng.standard_normal((3, 3))
        y = at @ ((g @ w @ g.T) * (bt @ d @ bt.T)) @ at.T
        ref = np.array([[np.sum(d[i:i + 3, j:j + 3] * w) for j in range(m)] for i in range(m)])
        assert np.abs(y - ref).max() < 1e-12


def test_weight_transform_matches_matrices():
    from nnef_tvm.schedules.winograd import transform_matrices, transform_weight
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    u = transform_weight(w, 4)
    _, g, _ = transform_matrices(4)
    assert u.shape == (6, 6, 3, 5) and u.dtype == np.float32
    want = g @ w[2, 1].astype(np.float64) @ g.T
    np.testing.assert_allclose(u[:, :, 1, 2], want, rtol=1e-6, atol=1e-6)


def test_tile_choice():
    from nnef_tvm.schedules.winograd import choose_tile
    assert choose_tile(56, 56, 64, 64) == 4
    assert choose_tile(28, 28, 128, 128) == 4
    assert choose_tile(14, 14, 256, 256) == 2        # 16 4x4 tiles: too few, 49 2x2 ones
    assert choose_tile(7, 7, 512, 512) is None       # 16 2x2 tiles: U is not paid back
    assert choose_tile(56, 56, 3, 64) is None        # RGB input layer: K = 3


# ------------------------------------------------------------------ modules
def _conv_module(x_shape, w, pads, *, bias=None, residual=False, relu=False, stride=1,
                 dilation=1, groups=1, weight_param=False, dtype="float32"):
    from tvm import relax
    from tvm.relax import op
    n, c, h, wd = x_shape
    x = relax.Var("x", relax.TensorType(x_shape, dtype))
    params = [x]
    if weight_param:
        wv = relax.Var("w", relax.TensorType(w.shape, dtype))
        params.append(wv)
    else:
        wv = relax.const(w.astype(dtype))
    oh = (h + pads[0] + pads[2] - dilation * 2 - 1) // stride + 1
    ow = (wd + pads[1] + pads[3] - dilation * 2 - 1) // stride + 1
    r = None
    if residual:
        r = relax.Var("r", relax.TensorType((n, w.shape[0], oh, ow), dtype))
        params.append(r)
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(op.nn.conv2d(x, wv, strides=stride, padding=pads, dilation=dilation,
                                     groups=groups))
            if bias is not None:
                y = bb.emit(op.add(y, relax.const(bias.astype(dtype))))
            if r is not None:
                y = bb.emit(op.add(y, r))
            if relu:
                y = bb.emit(op.nn.relu(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def numpy_conv3x3(x, w, pads):
    """NNEF conv, 3x3, stride 1, zero border ``pads`` = (top, left, bottom, right), float64."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh, ow = xp.shape[2] - 2, xp.shape[3] - 2
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + oh, j:j + ow],
                             w[:, :, i, j].astype(np.float64))
    return out


def _build_and_run(mod, target, arrays, winograd=True):
    import tvm
    from tvm import relax
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    low = run_phases(mod, target, build_phases(target, winograd=winograd))
    rules = {gv.name_hint: (f.attrs.get("nnef.schedule_rule") if f.attrs is not None else None)
             for gv, f in low.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    ex = relax.build(low, target.tvm(), relax_pipeline=None)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(a) for a in arrays]).numpy()
    return out, rules, low


CASES = [
    # (m, n, cin, cout, h, w, pads, bias, residual, relu)
    (4, 1, 16, 32, 14, 14, (1, 1, 1, 1), True, True, True),      # fused epilogue
    (4, 2, 20, 24, 13, 11, (1, 1, 1, 1), True, False, False),    # batch 2, H/W % 4, C % 16
    (2, 1, 8, 16, 9, 9, (0, 0, 0, 0), False, False, True),       # F(2,3), no padding
    (4, 1, 8, 16, 10, 12, (2, 2, 2, 2), False, False, False),    # padding 2
    (4, 1, 12, 40, 11, 17, (0, 1, 2, 1), True, True, False),     # asymmetric padding
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"m{c[0]}_n{c[1]}_{c[2]}x{c[3]}_"
                         f"{c[4]}x{c[5]}_pad{''.join(map(str, c[6]))}")
def test_kernel_matches_numpy(case, target, monkeypatch):
    from nnef_tvm.schedules import winograd
    m, n, cin, cout, h, wd, pads, bias, residual, relu = case
    monkeypatch.setattr(winograd, "choose_tile", lambda *a: m)
    rng = np.random.default_rng(cin * cout + h)
    w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    b = rng.standard_normal((1, cout, 1, 1)).astype(np.float32) if bias else None
    x = rng.standard_normal((n, cin, h, wd)).astype(np.float32)
    ref = numpy_conv3x3(x, w, pads)
    arrays = [x]
    if b is not None:
        ref = ref + b
    if residual:
        r = rng.standard_normal(ref.shape).astype(np.float32)
        ref = ref + r
        arrays.append(r)
    if relu:
        ref = np.maximum(ref, 0)
    mod = _conv_module(x.shape, w, pads, bias=b, residual=residual, relu=relu)
    got, rules, low = _build_and_run(mod, target, arrays)
    assert got.shape == ref.shape
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err < WINO_REL_TOL, err
    assert list(rules.values()) == ["winograd"], rules          # one kernel, epilogue fused
    (name,) = rules
    assert "conv2d" in name and (not relu or "relu" in name), name


def test_winograd_off_uses_direct_kernel(target):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 16, 14, 14)).astype(np.float32)
    mod = _conv_module(x.shape, w, (1, 1, 1, 1), relu=True)
    got, rules, low = _build_and_run(mod, target, [x], winograd=False)
    assert "winograd" not in low.script()
    assert list(rules.values()) == ["conv_channel_vector"]
    ref = np.maximum(numpy_conv3x3(x, w, (1, 1, 1, 1)), 0)
    assert np.abs(got - ref).max() / np.abs(ref).max() < DIRECT_REL_TOL


# ------------------------------------------------------------------ eligibility
def _legalized(mod, target):
    from tvm.relax import transform as T
    from nnef_tvm.schedules.winograd import legalize_map
    with target.tvm():
        ours = T.LegalizeOps(customize_legalize_map=legalize_map())(mod)
        stock = T.LegalizeOps()(mod)
    return ours, stock


INELIGIBLE = [
    ("stride2", dict(stride=2), (3, 3)),
    ("dilation2", dict(dilation=2), (3, 3)),
    ("groups2", dict(groups=2), (3, 3)),
    ("kernel1x1", {}, (1, 1)),
    ("kernel5x5", {}, (5, 5)),
    ("weight_param", dict(weight_param=True), (3, 3)),
    ("float16", dict(dtype="float16"), (3, 3)),
]


@pytest.mark.parametrize("name,kw,k", INELIGIBLE, ids=[c[0] for c in INELIGIBLE])
def test_ineligible_keeps_stock_legalization(name, kw, k, target):
    import tvm
    groups = kw.get("groups", 1)
    w = np.ones((16, 16 // groups, *k), np.float32)
    pads = (k[0] // 2,) * 4
    mod = _conv_module((1, 16, 14, 14), w, pads, **kw)
    ours, stock = _legalized(mod, target)
    assert "winograd" not in ours.script()
    tvm.ir.assert_structural_equal(ours, stock)


def test_small_map_stays_direct(target):
    w = np.ones((32, 32, 3, 3), np.float32)
    ours, _ = _legalized(_conv_module((1, 32, 7, 7), w, (1, 1, 1, 1)), target)
    assert "winograd" not in ours.script()


def test_eligible_is_rewritten(target):
    w = np.ones((32, 32, 3, 3), np.float32)
    ours, _ = _legalized(_conv_module((1, 32, 14, 14), w, (1, 1, 1, 1)), target)
    text = ours.script()
    for stage in ("pad", "in_rows", "input", "gemm", "out_rows", "output"):
        assert f'"winograd_{stage}"' in text, stage


# ------------------------------------------------------------------ rule / knobs
def _fused_winograd_func(target, cin=16, cout=32, hw=14):
    import tvm
    from nnef_tvm.targets.pipeline import build_phases, run_phases
    w = np.ones((cout, cin, 3, 3), np.float32)
    mod = _conv_module((1, cin, hw, hw), w, (1, 1, 1, 1), bias=np.ones((1, cout, 1, 1)),
                       relu=True)
    phases = [p for p in build_phases(target) if p.name in ("legalize", "fuse", "fuse_tir")]
    low = run_phases(mod, target, phases)
    funcs = [f for _, f in low.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(funcs) == 1
    return funcs[0]


def test_op_pattern_lets_epilogue_fuse(target):
    func = _fused_winograd_func(target)
    text = func.script()
    assert "winograd_gemm" in text and "T_add" in text and "compute" in text


def test_every_knob_setting_schedules(target):
    from tvm import s_tir
    from nnef_tvm.schedules.cpu_common import knob_overrides, num_cores, vector_lanes
    from nnef_tvm.schedules.default import knob_space
    from nnef_tvm.schedules.winograd_cpu import schedule_winograd
    func = _fused_winograd_func(target, cin=16, cout=64, hw=16)
    t = target.tvm()
    space = knob_space(func, t)
    assert len(space) >= 3 and space[0]["winograd.rows"] >= 1
    for setting in space:
        with knob_overrides(setting):
            sch = s_tir.Schedule(func)
            assert schedule_winograd(sch, vector_lanes(t), num_cores(t)), setting
        # a traced program: replays on the unscheduled function
        replay = s_tir.Schedule(func)
        sch.trace.apply_to_schedule(replay, remove_postproc=False)


@pytest.mark.parametrize("setting", [
    {"winograd.parts": 2, "winograd.rows": 2, "winograd.fi": 16},
    {"winograd.fi": 16, "winograd.xt": 2, "winograd.rows": 4, "winograd.yt": 2},
    {"winograd.out": "x", "winograd.acc_scope": "local"},
], ids=["parts2_rows2", "fi16_xt2_yt2", "out_x_local"])
def test_knob_variants_match_numpy(setting, target, monkeypatch):
    """Non-default schedules of one kernel (what tuning measures) compute the same conv."""
    from nnef_tvm.schedules import winograd
    from nnef_tvm.schedules.cpu_common import knob_overrides
    monkeypatch.setattr(winograd, "choose_tile", lambda *a: 4)
    rng = np.random.default_rng(7)
    w = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    ref = np.maximum(numpy_conv3x3(x, w, (1, 1, 1, 1)), 0)
    mod = _conv_module(x.shape, w, (1, 1, 1, 1), relu=True)
    with knob_overrides(setting):
        got, rules, _ = _build_and_run(mod, target, [x])
    assert list(rules.values()) == ["winograd"], (setting, rules)
    assert np.abs(got - ref).max() / np.abs(ref).max() < WINO_REL_TOL


# ------------------------------------------------------------------ balanced blocks
@pytest.mark.parametrize("n,th,tw,cores,want", [
    (1, 14, 14, 2, 1),      # ResNet-18 64 @56: 7 blocks of 2 rows would run as 4 + 3
    (1, 14, 14, 1, 2),      # one thread: the largest block that fits
    (1, 12, 14, 2, 3),      # 3 blocks of 4 rows -> 4 blocks of 3
    (1, 7, 7, 2, 7),        # no balanced count: one block (then channel parts)
    (2, 7, 7, 2, 7),        # batch 2: two blocks of one image each
    (1, 8, 8, 2, 4),        # one 64-tile block -> two halves
    (1, 9, 9, 4, 3),        # nothing balances 4 cores: the largest that fits
])
def test_block_rows_prefers_counts_the_threads_share_evenly(n, th, tw, cores, want):
    from nnef_tvm.schedules.winograd_cpu import BLOCK_TILES, _block_rows
    rows = _block_rows(n, th, tw, cores)
    assert rows == want
    assert th % rows == 0 and (rows * tw <= BLOCK_TILES or rows == 1)


def _parallel_extents(text):
    import re
    return [int(x) for x in re.findall(r"T\.parallel\(T\.int64\((\d+)\)", text)]


@pytest.mark.parametrize("threads,blocks", [(2, 4), (1, 3)])
def test_balanced_blocks_schedule_and_match_numpy(threads, blocks, monkeypatch):
    """48 x 56 map, F(4, 3): 12 x 14 tiles; 2 threads take 4 blocks of 3 tile rows
    (not 3 of 4), 1 thread keeps 3 blocks; both compute NNEF ``conv`` + bias + relu."""
    import tvm
    from nnef_tvm.schedules import winograd
    from nnef_tvm.targets import get_target
    monkeypatch.setattr(winograd, "choose_tile", lambda *a: 4)
    target = get_target("x86", threads=threads)
    rng = np.random.default_rng(48 + threads)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal((1, 16, 1, 1)).astype(np.float32)
    x = rng.standard_normal((1, 8, 48, 56)).astype(np.float32)
    mod = _conv_module(x.shape, w, (1, 1, 1, 1), bias=b, relu=True)
    got, rules, low = _build_and_run(mod, target, [x])
    assert list(rules.values()) == ["winograd"], rules
    (func,) = [f for _, f in low.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert _parallel_extents(func.script()) == [blocks]
    ref = np.maximum(numpy_conv3x3(x, w, (1, 1, 1, 1)) + b, 0)
    assert np.abs(got - ref).max() / np.abs(ref).max() < WINO_REL_TOL
