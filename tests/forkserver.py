"""Run many short commands as real processes without paying Python's import of torch and RecBole
for each: a zygote process imports them once, then forks one child per command.

The child is a process of its own (own working directory, stdin from /dev/null, stdout and stderr
to files, the command's exit status): it runs the entry point exactly as ``python SCRIPT ARGS`` or
``python -m MODULE ARGS`` would (``runpy``, as ``__main__``), from a copy of the zygote in which
nothing but the imports has happened. Used by tests/test_bad_input.py (35 commands that each fail
in about a second after a ~2.5 s import).

    with Zygote(env) as z:
        returncode = z.run([sys.executable, "-m", "recbole_recgoat.features", ...], cwd, out, err)
"""

import json
import logging
import os
import runpy
import select
import signal
import subprocess
import sys
import traceback

# imported once in the zygote; never a module that a command runs as __main__. The package first, as
# every entry point imports it: its thread policy must precede torch's OpenMP runtime, and its numpy 2
# shims (recbole_recgoat.compat) RecBole's import
PRELOAD = ("recbole_recgoat", "recbole_recgoat.cli", "recbole_recgoat.quick_start", "recbole_recgoat.model",
           "recbole_recgoat.features.cli", "recbole_recgoat.benchmark.cli", "torch_geometric")


def _exit_code(exc):
    """The status ``python`` exits with for ``SystemExit(exc.code)`` (a message goes to stderr)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(request):
    """Run one command in this (forked) process; returns its exit status."""
    os.chdir(request["cwd"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    args = request["args"]  # what follows the interpreter: ["-m", MODULE, ...] or [SCRIPT, ...]
    try:
        if args[0] == "-m":
            sys.argv = [args[1]] + args[2:]
            sys.path[0] = os.getcwd()  # as `python -m` puts it
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(args)
            sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
            runpy.run_path(args[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def serve():
    """The zygote's loop: one JSON request per stdin line, one ``{"returncode": N}`` line back."""
    for name in PRELOAD:
        __import__(name)
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os._exit(_child(request))
        _, status = os.waitpid(pid, 0)
        reply.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


class Zygote:
    """A running zygote (``serve``), started with ``env``; one command at a time."""

    def __init__(self, env):
        self.proc = subprocess.Popen([sys.executable, __file__], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)

    def run(self, command, cwd, stdout, stderr, timeout=300):
        """Exit status of ``command`` (``[sys.executable, ...]``) run in ``cwd``, its output to the
        files. Past ``timeout`` seconds the zygote and the command are killed (TimeoutError)."""
        assert command[0] == sys.executable, command
        request = {"args": command[1:], "cwd": str(cwd), "stdout": str(stdout), "stderr": str(stderr)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], timeout)[0]:  # one reply per request: nothing buffered
            os.killpg(self.proc.pid, signal.SIGKILL)  # the zygote's session: it and the forked command
            raise TimeoutError(f"{command} ran past {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the zygote died (exit {self.proc.wait()})")
        return json.loads(line)["returncode"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    serve()
