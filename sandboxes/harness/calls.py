# Serving calls and running tests (data.py comes first in the same source).
# The reward server compiles this with the harness (harness.py) once per
# process, and hands it to a harness only in the modes that need it: to the
# program's interpreter in assert mode (`_serving`: run the calls the host
# hands over), and to the tests' own interpreter (`_run_tests`). The
# protocol is in harness.py.


def _serving(
    door,
    describe,
    scan,
    quote,
    encode_value,
    decode_value,
    unserialisable,
    max_value,
    _list=list,
    _dict=dict,
    _tuple=tuple,
    _set=set,
    _frozenset=frozenset,
    _sorted=sorted,
    _len=len,
    _callable=callable,
    _str=str,
    _BaseException=BaseException,
    _SystemExit=SystemExit,
    _NameError=NameError,
    _TypeError=TypeError,
    _ValueError=ValueError,
    _RecursionError=RecursionError,
):
    """The program's interpreter, assert mode: `serve_calls(g)` runs the
    calls the host hands over, in the program's globals `g`. Everything it
    uses is bound now, before the program runs."""
    import builtins

    get = _dict.get
    str_startswith = _str.startswith
    join = _str.join
    builtins_dict = builtins.__dict__
    wraps = {"set": _set, "frozenset": _frozenset, "sorted": _sorted, "list": _list, "tuple": _tuple}
    missing = object()

    def serve_calls(g):
        """Assert mode, after the program ran: run the calls the host hands
        over, until it says "end". Returns None, or a result frame for a
        value that has no data form."""
        names = [k for k, v in _list(g.items()) if _callable(v) and not str_startswith(k, "__")]
        step = door('{"op":"tests","names":[' + ",".join([quote(n) for n in names]) + "]")
        while not get(step, "end"):
            name = step["call"]
            fn = get(g, name, missing)
            if fn is missing:
                fn = get(builtins_dict, name, missing)
            args = decode_value(scan(step["args"], 0)[0])
            kwargs = step["kwargs"]
            kwargs = {} if kwargs is None else decode_value(scan(kwargs, 0)[0])
            try:
                if fn is missing:
                    raise _NameError("name " + quote(name) + " is not defined")
                value = fn(*args, **kwargs)
                wrap = get(step, "wrap")
                if wrap is not None:
                    value = wraps[wrap](value)
            except _SystemExit:
                raise
            except _BaseException as error:
                kind, message, _ = describe(error)
                step = door('{"op":"threw","kind":' + quote(kind) + ',"message":' + quote(message))
                continue
            try:
                text = encode_value(value)
            except (_TypeError, _ValueError, _RecursionError) as error:
                return unserialisable(error)
            if _len(text) > max_value:
                return '{"op":"result","status":"unserialisable","message":"the value is too large to send"'
            frame = '{"op":"value","value":' + quote(text)
            if get(step, "copy_back"):
                # The arguments after the call, for the ones it changed in
                # place (the tests hold their own copies).
                try:
                    frame += ',"args":' + quote(encode_value(args))
                except (_TypeError, _ValueError, _RecursionError):
                    pass
            step = door(frame)
        return None


    return serve_calls


def _run_tests(door, names, describe, sources, quit_now, encode_value, decode_value, scan, quote):
    """The tests' interpreter: no program runs here. The test code runs chunk
    by chunk in globals of its own, where each of the program's functions is
    a proxy that calls it through the host, with data in and data out."""
    import builtins

    def exception(kind, message):
        cls = builtins.__dict__.get(kind)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(message)
            except BaseException:
                pass
        return RuntimeError(kind + ": " + message)

    def copy_back(args, after):
        """Arguments the program changed in place, changed here too."""
        for mine, theirs in zip(args, after):
            if type(mine) is list and type(theirs) is list:
                mine[:] = theirs
            elif type(mine) is dict and type(theirs) is dict:
                mine.clear()
                mine.update(theirs)
            elif type(mine) is set and type(theirs) is set:
                mine.clear()
                mine.update(theirs)
            elif type(mine) is bytearray and type(theirs) is bytes:
                mine[:] = theirs

    def proxy(name):
        def call_the_program(*args, **kwargs):
            reply = door(
                '{"op":"call","name":'
                + quote(name)
                + ',"args":'
                + quote(encode_value(list(args)))
                + ',"kwargs":'
                + quote(encode_value(kwargs))
            )
            if "threw" in reply:
                raise exception(reply["threw"], reply["message"])
            if reply.get("args") is not None:
                copy_back(args, decode_value(scan(reply["args"], 0)[0]))
            return decode_value(scan(reply["value"], 0)[0])

        call_the_program.__name__ = call_the_program.__qualname__ = name
        return call_the_program

    tests = {"__name__": "__main__", "__builtins__": builtins}
    # The program says which names it defines; none of them may shadow a
    # builtin the tests use (a program's `len` or `all` would decide their
    # asserts), nor a dunder.
    for name in names:
        if isinstance(name, str) and name.isidentifier() and not name.startswith("__") and name not in builtins.__dict__:
            tests[name] = proxy(name)
    while True:
        chunk = door('{"op":"chunk"')
        if chunk.get("done"):
            quit_now(0)
        source = "\n" * (chunk["line"] - 1) + chunk["code"]
        sources["<tests>"] = source.split("\n")
        try:
            exec(compile(source, "<tests>", "exec", dont_inherit=True), tests)
        except BaseException as error:
            kind, message, text = describe(error)
            door(
                '{"op":"raised","kind":' + quote(kind) + ',"message":' + quote(message) + ',"traceback":' + quote(text)
            )
            quit_now(0)


