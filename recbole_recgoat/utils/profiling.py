"""Peak memory of a code region: CUDA allocator peak on GPU, sampled RSS above the start on CPU."""

import os
import threading
import time

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes():
    """Resident set size of this process (Linux ``/proc/self/statm``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", "r") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - non-Linux
        return 0


class PeakMemory:
    """Context manager measuring the peak memory a region adds.

    ``peak_bytes`` is, on CUDA, ``torch.cuda.max_memory_allocated`` minus the allocation at entry;
    on CPU, the highest RSS seen by a sampling thread (every ``interval`` s) minus the RSS at entry.
    """

    def __init__(self, device=None, interval=0.005):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, current_rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._peak = current_rss_bytes()
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._peak = max(self._peak, current_rss_bytes())
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self._peak - self._base, 0)
        return False
