"""Shared fixtures.

Every test runs in its own temporary working directory (RecBole writes ./log, ./saved and
./log_tensorboard under the cwd) with ``sys.argv`` reduced to the program name, so pytest's own
flags never reach a config. Every process a test starts dies with the test run
(``RECGOAT_DIE_WITH_PARENT``: a killed pytest leaves no worker behind).
"""

import os
import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("model_support", "preference_graph_support")  # their helpers' asserts explain failures too

os.environ.setdefault("RECGOAT_DIE_WITH_PARENT", "1")  # inherited by every subprocess a test starts

import recbole_recgoat  # noqa: E402,F401  (thread policy, then the compatibility shims)
import torch  # noqa: E402  (after recbole_recgoat's thread policy)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BUNDLED = REPO / "recbole_recgoat" / "bundled"


@pytest.fixture(autouse=True)
def isolated_run(tmp_path, monkeypatch):
    recbole_recgoat.compat.apply_warning_filters()  # pytest resets the filters the import set, per test
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    yield tmp_path


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole test module (small tensors on a shared machine: faster and
    steadier), the number before restored after it; a module asks for it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast():
    """Config overrides for quick runs on the bundled dataset."""
    return {"epochs": 2, "stopping_step": 2, "train_batch_size": 4096, "state": "WARNING", "show_progress": False}


def snapshot_files(root):
    """``{relative path: (size, mtime_ns)}`` of every file under ``root``."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out
