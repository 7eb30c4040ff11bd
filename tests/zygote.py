"""A process that has imported torch and forks each of the tests' fresh processes.

Half a test run's fresh processes' CPU went to ``import torch`` (~1.6 s of CPU each, some
300 processes a run, on a 2-core machine). A child forked from this process starts where
``python -c "import torch"`` would be and runs the script or ``-c`` code as ``python``
runs it, ``-m`` too (``__main__``, ``sys.argv``, ``sys.path[0]``, the working directory and the
environment of the request, stdout and stderr to files, atexit handlers, the exit
status). Nothing else ran here: aotpack is not imported, nothing was compiled, no
inductor or dynamo state exists, so a package loaded there is loaded as in a new
``python``. conftest.run_fresh sends it what a fresh ``python`` would run alike: not
other interpreter options, not an environment that differs in what Python or torch read at start-up
(``PYTHONHASHSEED``, ``TORCH_LOGS``...), which get a real new process; ``PYTHONPATH`` it
sets on ``sys.path`` as python would.

Protocol (one JSON request a line on stdin): ``{"argv", "env", "cwd", "stdout",
"stderr"}``; it answers the child's pid, then its exit status, a line each.
"""

import json
import os
import sys

import torch  # noqa: F401 - the import every fresh process would pay for


def _child(request: dict) -> None:
    """In the forked child: become ``python ARGV...`` and exit with its status."""
    import atexit
    import builtins
    import traceback
    import types

    status = 1
    try:
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, flags)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = open(0, closefd=False)
        os.chdir(request["cwd"])
        _pythonpath(os.environ.get("PYTHONPATH", ""), request["env"].get("PYTHONPATH", ""))
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        if argv[0] == "-m":  # (``python -m NAME``: runpy, as python runs it)
            import runpy

            sys.argv, sys.path[0] = [argv[1], *argv[2:]], os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            raise SystemExit(0)
        if argv[0] == "-c":
            source, filename = argv[1], "<string>"
            sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
        else:
            filename = os.path.abspath(argv[0])
            with open(filename, encoding="utf-8") as f:
                source = f.read()
            sys.argv, sys.path[0] = list(argv), os.path.dirname(filename)
            main.__file__ = argv[0]
        sys.modules["__main__"] = main
        exec(compile(source, filename, "exec"), main.__dict__)
        status = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
    except BaseException as e:  # (as python prints it: from the program's first frame, not this one's)
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def _pythonpath(started: str, wanted: str) -> None:
    """``sys.path`` as a python started with ``PYTHONPATH=wanted`` has it: those folders,
    absolute, right after ``sys.path[0]``, in place of this process's own."""
    def folders(value):
        return [os.path.abspath(p) for p in value.split(os.pathsep) if p]

    if folders(started) == folders(wanted):
        return
    rest = [p for p in sys.path[1:] if p not in folders(started)]
    sys.path[:] = sys.path[:1] + [f for f in dict.fromkeys(folders(wanted)) if f not in rest] + rest


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
