"""Template search with real measurements (LocalRunner), then compile and check numbers.

Slow: the runner's worker process imports TVM before the first measurement
(10-30 s on a loaded 2-core machine) and each candidate is compiled by LLVM.
The store must end with one successful record per measured setting, the
compiler must apply the fastest, the tuned build must match numpy, and
``both`` must hand MetaSchedule's search only the trials that are left.
"""
import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from nnef_tvm.compiler import compile_relax  # noqa: E402
from nnef_tvm.schedules.store import TuningStore, mean_secs  # noqa: E402
from nnef_tvm.schedules.tuning import tune_model  # noqa: E402
from nnef_tvm.targets import get_target  # noqa: E402

from tuning_template_test import (conv_module, conv_reference, const_conv_module,  # noqa: E402,I100
                                  const_weights, matmul_module)

pytestmark = pytest.mark.slow


def test_template_search_measures_and_compile_applies_the_fastest(tmp_path):
    store = TuningStore(tmp_path)
    lines = []
    s = tune_model(None, "x86", trials=4, store=store, mod=conv_module(), strategy="template",
                   progress=lines.append)
    assert s.trials == s.template_trials == 4
    log = store.read(s.device_key)
    secs = [mean_secs(r) for _, r in log.records]
    assert len(secs) == 4 and all(v is not None and v > 0 for v in secs)
    assert any(ln.startswith("template [") and "trials 4/4" in ln for ln in lines), lines
    compiled = compile_relax(conv_module(), get_target("x86"), tuning_dir=tmp_path)
    assert compiled.metadata["tuning"]["tuned_kernels"] == 1
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 8, 10, 10)).astype("float32")
    w = rng.standard_normal((16, 8, 3, 3)).astype("float32")
    b = rng.standard_normal((1, 16, 1, 1)).astype("float32")
    got = list(compiled.run({"x": x, "w": w, "b": b}).values())[0]
    np.testing.assert_allclose(got, conv_reference(x, w, b), rtol=1e-4, atol=1e-4)
    # resume: nothing left at 4 trials
    again = tune_model(None, "x86", trials=4, store=store, mod=conv_module(),
                       strategy="template")
    assert again.trials == 0 and again.skipped == 1


def test_both_runs_the_evolutionary_search_with_what_is_left(tmp_path):
    from nnef_tvm.schedules import template_search as ts
    from nnef_tvm.schedules.tuning import extract_tasks, fused_module, tuning_target
    x86 = get_target("x86")
    task, = extract_tasks(fused_module(matmul_module(), x86), tuning_target(x86))
    n = len(list(ts.candidates(task.extracted.dispatched[0]["main"], x86.tvm())))
    store = TuningStore(tmp_path)
    s = tune_model(None, "x86", trials=n + 2, store=store, mod=matmul_module(),
                   strategy="both", seed=3)
    assert s.template_trials == n and s.search_trials == 2 and s.trials == n + 2
    assert set(s.phases) == {"template", "evolutionary"}
    log = store.read(s.device_key)
    assert list(log.trial_counts().values()) == [n + 2]
    # the search's records are recognised as such (only they seed later searches)
    from nnef_tvm.schedules.tuning import is_search_trace
    assert [is_search_trace(r) for _, r in log.records] == [False] * n + [True] * 2
    # the compiled kernel is the fastest of both searches, and still right
    compiled = compile_relax(matmul_module(), x86, tuning_dir=tmp_path)
    assert compiled.metadata["tuning"]["tuned_kernels"] == 1
    rng = np.random.default_rng(12)
    x = rng.standard_normal((8, 32)).astype("float32")
    w = rng.standard_normal((32, 16)).astype("float32")
    got = list(compiled.run({"x": x, "w": w}).values())[0]
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


def test_constant_weight_candidates_run_packed(tmp_path):
    # weights packed by the rule: the runner must feed the packed layout, else every run fails
    w, b = const_weights()
    store = TuningStore(tmp_path)
    s = tune_model(None, "x86", trials=3, store=store, mod=const_conv_module(w, b),
                   strategy="template")
    secs = [mean_secs(r) for _, r in store.read(s.device_key).records]
    assert len(secs) == 3 and all(v is not None for v in secs), secs
