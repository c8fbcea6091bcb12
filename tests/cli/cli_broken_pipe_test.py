"""A CLI whose reader goes away (`nnef-run m.so --info | head`) stops quietly, no traceback."""
import subprocess
import sys

PROGRAM = """
import argparse
from nnef_tvm.cli.common import run_main

def body(args):
    for i in range(200000):
        print("line", i)

raise SystemExit(run_main("nnef-test", body, argparse.ArgumentParser(), []))
"""


def test_closed_stdout_is_not_a_traceback():
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()                      # the reader goes away after 10 bytes
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 141
