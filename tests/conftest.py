"""Test-wide setup: make ``tests/support`` importable as ``support``."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
