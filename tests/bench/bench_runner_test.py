"""The timing loop and statistics (no timing assertions: counts, order statistics, memory)."""
import numpy as np
import pytest

from nnef_tvm.bench.runner import MemoryProbe, median, percentile, summarize, time_calls


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 101])
def test_statistics_match_numpy(n):
    values = list(np.random.default_rng(n).random(n))
    assert median(values) == pytest.approx(float(np.median(values)))
    # nearest-rank percentile == numpy's 'inverted_cdf' method
    for q in (10, 50, 90, 100):
        assert percentile(values, q) == float(np.percentile(values, q, method="inverted_cdf"))
    s = summarize(values)
    assert s.samples == n
    assert s.min_ms == pytest.approx(min(values) * 1e3)
    assert s.mean_ms == pytest.approx(float(np.mean(values)) * 1e3)
    assert s.throughput_per_s == pytest.approx(1.0 / float(np.median(values)))


def test_summarize_needs_samples():
    with pytest.raises(ValueError):
        summarize([])


def test_time_calls_runs_warmup_then_repeat_synchronously():
    log = []
    samples = time_calls(lambda: log.append("run"), warmup=2, repeat=5,
                         sync=lambda: log.append("sync"))
    assert len(samples) == 5 and all(s >= 0 for s in samples)
    assert log == ["run", "sync"] * 7          # every call, warm-up or timed, is synchronized


def test_memory_probe_sees_an_allocation():
    probe = MemoryProbe()
    block = np.ones(64 * 2**20 // 8)            # 64 MiB, touched
    block += 1
    delta = probe.delta()
    assert delta["peak_delta_bytes"] >= 48 * 2**20
    assert delta["peak_rss_bytes"] >= delta["baseline_rss_bytes"]
    del block
