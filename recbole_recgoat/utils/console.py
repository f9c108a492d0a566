"""What a run shows on the terminal, and what only its log file gets.

RecBole's logger (``recbole.utils.init_logger``) writes every message twice: to the terminal
(a ``StreamHandler`` on stderr) and to ``./log/<model>/...log``.  :func:`route_terminal` puts a
filter on the terminal handler only, by the config key ``console``:

``normal``   the lines meant for a person (a record logged with ``extra=TERMINAL``: the run's
             header, one line per epoch, slow steps), and every warning and error;
``verbose``  everything, as RecBole shows it (its config dump, the model, per-epoch blocks);
``quiet``    warnings and errors only (scripts: the command prints its result table alone).

The log file is left as RecBole makes it: it keeps everything at the ``state`` level.  The
helpers below format durations and the ETA of an early-stopped training
(:func:`training_eta`), time long steps (:class:`Stage`) and show the progress of a step of known
size with its ETA (:class:`Progress`, a tqdm bar; :func:`meter` is tqdm's text of a progress,
which the benchmark's grid lines use too); both write to stderr only, and nothing when the
console of the current run is ``quiet`` (as on the ranks other than 0 of a multi-process run).
"""

import logging
import sys
import time

from recbole_recgoat.errors import InputError

CONSOLE_MODES = ("normal", "verbose", "quiet")
TERMINAL = {"terminal": True}  # logger.info(msg, extra=TERMINAL): a line for the terminal too
SLOW_STEP_S = 2.0  # a Stage or Progress that took at least this long says so on the terminal
REPORT_EVERY_S = 30.0  # Progress off a terminal (a file, a pipe): one line this often while the step runs
_CURRENT = {"mode": "normal"}  # the console mode of the run this process is in (set by route_terminal)


def current_mode():
    """The console mode set by the last :func:`route_terminal` of this process (``normal`` before)."""
    return _CURRENT["mode"]


def console_mode(value):
    """The ``console`` setting as one of :data:`CONSOLE_MODES` (None -> ``normal``)."""
    mode = "normal" if value is None else str(value).strip().lower()
    if mode not in CONSOLE_MODES:
        raise InputError(f"console: got {value!r}; expected one of {', '.join(CONSOLE_MODES)}")
    return mode


class TerminalFilter(logging.Filter):
    """Passes a record to the terminal by the console mode (see the module docstring)."""

    def __init__(self, mode):
        super().__init__()
        self.mode = console_mode(mode)

    def filter(self, record):
        if self.mode == "verbose" or record.levelno >= logging.WARNING:
            return True
        return self.mode == "normal" and bool(getattr(record, "terminal", False))


class TerminalFormatter(logging.Formatter):
    """The message alone; a warning or an error is prefixed with its level."""

    def __init__(self):
        super().__init__("%(message)s")

    def format(self, record):
        text = super().format(record)
        return f"{record.levelname}  {text}" if record.levelno >= logging.WARNING else text


def terminal_handlers(root=None):
    """The root logger's handlers that write to a stream other than a file."""
    root = root or logging.getLogger()
    return [h for h in root.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def route_terminal(mode, root=None):
    """Apply the console ``mode`` to the terminal handlers of the root logger (file handlers untouched)."""
    mode = console_mode(mode)
    _CURRENT["mode"] = mode
    for handler in terminal_handlers(root):
        for old in [f for f in handler.filters if isinstance(f, TerminalFilter)]:
            handler.removeFilter(old)
        handler.addFilter(TerminalFilter(mode))
        if mode != "verbose":
            handler.setFormatter(TerminalFormatter())


def duration(seconds):
    """``0.4s``, ``12.3s``, ``1m05s``, ``2h03m``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def last_epoch_if_no_new_best(epochs, best_epoch, stopping_step, eval_step):
    """The last epoch (0-based) of an early-stopped training whose best stays ``best_epoch``.

    RecBole stops at the ``stopping_step + 1``-th evaluation without a better valid score; there is
    one every ``eval_step`` epochs.  A new best restarts the count, so the run may go on longer, up
    to epoch ``epochs - 1``: this is when it ends at the earliest, not at the latest."""
    last = int(epochs) - 1
    if best_epoch is None or eval_step is None or int(eval_step) <= 0:
        return last
    return min(last, int(best_epoch) + (int(stopping_step) + 1) * int(eval_step))


def training_eta(epoch, epochs, seconds_per_epoch, best_epoch=None, stopping_step=None, eval_step=None,
                 stopped=False):
    """``ETA ...`` of a training after epoch ``epoch`` (0-based), at ``seconds_per_epoch``.

    ``ETA 0.0s`` when it has ended; ``ETA 6.4s`` when it ends at ``epochs`` whatever happens;
    else ``ETA 1m05s if no new best, <= 53m12s``: the time to early stopping if the valid score
    does not improve again, and to the last epoch ``epochs`` (the bound)."""
    last = int(epochs) - 1
    if stopped or epoch >= last:
        return "ETA 0.0s"
    at_most = duration((last - epoch) * seconds_per_epoch)
    if best_epoch is None or stopping_step is None:
        return f"ETA <= {at_most}"
    early = last_epoch_if_no_new_best(epochs, best_epoch, stopping_step, eval_step)
    if early >= last:
        return f"ETA {at_most}"
    return f"ETA {duration((early - epoch) * seconds_per_epoch)} if no new best, <= {at_most}"


class Stage:
    """A long step, timed: ``with Stage("loading lastfm-2k", show=True): ...``.

    On a terminal (a TTY) ``<what> ...`` shows while it runs; when it ends, ``<what>: 12.3s`` is
    written if it took at least :data:`SLOW_STEP_S` (the transient line is erased otherwise).
    ``show=False`` (quiet, or a rank other than 0) writes nothing.  ``seconds`` holds the time.
    """

    def __init__(self, what, show=True, stream=None):
        self.what, self.show = what, bool(show)
        self.stream = stream or sys.stderr
        self.seconds = None
        self._tty = self.show and bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self):
        self._start = time.perf_counter()
        if self._tty:
            self.stream.write(f"{self.what} ...")
            self.stream.flush()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.seconds = time.perf_counter() - self._start
        if self._tty:
            self.stream.write("\r\033[K")
        if self.show and exc_type is None and self.seconds >= SLOW_STEP_S:
            self.stream.write(f"{self.what}: {duration(self.seconds)}\n")
        self.stream.flush()
        return False


BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA {remaining}]"
LINE_FORMAT = "{desc}: {percentage:.0f}% {n_fmt}/{total_fmt} [{elapsed}, ETA {remaining}]"


def meter(what, done, total, elapsed, bar_format=LINE_FORMAT, unit="it"):
    """tqdm's progress text of ``done`` of ``total`` after ``elapsed`` seconds (``remaining``: the
    rate so far times what is left; ``?`` before the first unit)."""
    from tqdm import tqdm

    return tqdm.format_meter(int(done), int(total), float(elapsed), prefix=what, bar_format=bar_format, unit=unit)


class Progress:
    """Progress of a step of ``total`` units: ``with Progress("kNN graph", n) as p: ... p.update(done)``.

    On a terminal, a tqdm bar redrawn at most once a second: ``kNN graph:  42%|####  | 420000/1000000
    [02:10, ETA 03:00]`` (the ETA: the rate so far times what is left), erased when the step ends.
    Off a terminal, tqdm's text of the same (``kNN graph: 42% 420000/1000000 [02:10, ETA 03:00]``)
    every :data:`REPORT_EVERY_S` seconds once the step has run so long.  At the end ``<what>:
    5m36s`` if it took at least :data:`SLOW_STEP_S`.  Nothing when the console is quiet.
    ``clock``: the time source (tests), for the bar too.
    """

    def __init__(self, what, total, stream=None, show=None, clock=time.perf_counter):
        self.what, self.total, self.clock = what, int(total), clock
        self.stream = stream or sys.stderr
        self.show = (current_mode() != "quiet") if show is None else bool(show)
        self._tty = self.show and bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.bar = None

    def __enter__(self):
        self._start = self._last = self.clock()
        if self._tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.what, file=self.stream, mininterval=1.0, miniters=0,
                            leave=False, bar_format=BAR_FORMAT, dynamic_ncols=True)
            self.bar._time = self.clock  # tqdm's own clock: the same time source as the rest
            self.bar.reset(total=self.total)
        return self

    def text(self, now):
        return meter(self.what, self.done, self.total, now - self._start)

    def update(self, done):
        """``done`` units of ``total`` are done."""
        step, self.done = int(done) - self.done, int(done)
        if not self.show:
            return
        if self.bar is not None:
            self.bar.update(step)
            return
        now = self.clock()
        if now - self._start >= REPORT_EVERY_S and now - self._last >= REPORT_EVERY_S:
            self.stream.write(self.text(now) + "\n")
            self._last = now
            self.stream.flush()

    def __exit__(self, exc_type, exc, tb):
        if not self.show:
            return False
        if self.bar is not None:
            self.bar.close()  # leave=False: the bar's line is erased
        seconds = self.clock() - self._start
        if exc_type is None and seconds >= SLOW_STEP_S:
            self.stream.write(f"{self.what}: {duration(seconds)}\n")
        self.stream.flush()
        return False
