"""benchmarks/tools/count_regions.c, the counter behind ``profile_step.py --regions``: one OpenMP
parallel region per large elementwise operator, none for a small one (below ATen's grain size)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # process behaviour, not numpy/scipy versions: CI's second lane leaves it out

SRC = Path(__file__).resolve().parents[1] / "benchmarks" / "tools" / "count_regions.c"
PROBE = """
import ctypes, torch
torch.set_num_threads(2)
count = ctypes.CDLL(None).recgoat_parallel_regions
count.restype = ctypes.c_ulonglong
big, small = torch.ones(262144), torch.ones(1000)
a = count(); big.add_(big); big.mul_(2.0); b = count(); small.add_(small); c = count()
print(b - a, c - b)
"""


@pytest.mark.skipif(shutil.which("gcc") is None or not sys.platform.startswith("linux"), reason="needs gcc on Linux")
def test_the_counter_counts_parallel_regions(tmp_path):
    lib = tmp_path / "count_regions.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(SRC), "-ldl"], check=True)
    env = dict(os.environ, LD_PRELOAD=str(lib), OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "0"]
