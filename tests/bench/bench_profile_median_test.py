"""profile_vm keeps a per-run median next to the mean (one preempted run must not set a kernel's time)."""
import time

from nnef_tvm.bench.profile import kernel_rows, profile_vm


class _FakeVM:
    """Calls the installed instrument around each 'kernel' like the Relax VM does."""

    def __init__(self, durations):
        self.durations = list(durations)     # seconds of kernel 'k' in each run
        self.instrument = None

    def set_instrument(self, fn):
        self.instrument = fn

    def main(self):
        secs = self.durations.pop(0)
        self.instrument(None, "k", True, None)
        if secs:
            time.sleep(secs)
        self.instrument(None, "k", False, None)
        self.instrument(None, "vm.builtin.alloc", True, None)
        self.instrument(None, "vm.builtin.alloc", False, None)


def test_median_ignores_one_slow_run():
    vm = _FakeVM([0.05, 0.0, 0.0, 0.0, 0.0])
    times = profile_vm(vm, vm.main, [], runs=5)
    k = times["k"]
    assert k["calls"] == 1
    assert k["total_ms"] >= 50 / 5 * 0.9         # the mean carries the slow run
    assert k["median_ms"] < 2.0                  # the median does not
    rows = kernel_rows(times, [])
    by = {r["kernel"]: r for r in rows}
    assert by["k"]["median_ms"] == k["median_ms"]
    assert "vm builtins" in by and by["vm builtins"]["calls"] == 1


def test_every_run_counted_once():
    vm = _FakeVM([0.0] * 3)
    times = profile_vm(vm, vm.main, [], runs=3)
    assert times["k"]["calls"] == 1 and times["vm.builtin.alloc"]["calls"] == 1
