"""nnef_tvm.threads: the TVM thread pool gets every available CPU unless the user chose."""
import os
import subprocess
import sys


def _pool_size(env_extra: dict) -> str:
    code = ("import nnef_tvm, tvm, os; "
            "print(os.environ.get('TVM_NUM_THREADS'), "
            "tvm.get_global_func('runtime.NumThreads')())")
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_default_is_every_cpu_of_the_affinity_mask():
    n = len(os.sched_getaffinity(0))
    env_value, pool = _pool_size({})
    assert env_value == str(n)
    assert int(pool) == n          # TVM alone would use n // 2 on x86 (assumes hyper-threads)


def test_user_choice_is_kept():
    env_value, pool = _pool_size({"TVM_NUM_THREADS": "1"})
    assert env_value == "1" and int(pool) == 1
    env_value, _ = _pool_size({"OMP_NUM_THREADS": "1"})
    assert env_value == "None"     # TVM reads OMP_NUM_THREADS itself


def test_configure_cpu_threads_sets_the_variable(monkeypatch):
    from nnef_tvm.threads import configure_cpu_threads
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    configure_cpu_threads(3)
    assert os.environ["TVM_NUM_THREADS"] == "3"
