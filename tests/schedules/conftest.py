"""Make the kernel builders of this folder (``schedules_kernels``) importable."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
