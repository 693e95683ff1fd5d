# Python data <-> typed JSON, the form in which values cross the sandbox
# boundary when the host compares them itself (assert tests turned into
# host-compared calls). Shared by the harness (harness.py, appended to this
# file) and the assert-test converter (asserts.py, likewise); the host's side
# is reward-server/src/code/pyvalue.rs, which documents the format.
#
# The encoder runs in the same interpreter as the untrusted program, after
# it. So it binds every builtin it uses now (as defaults, before the program
# runs), reads values through the base types' own methods (`list.__iter__`,
# `dict.items`, `int.__repr__`), never through the value's (which a subclass
# may override), and checks types with `issubclass(type(v), ...)`, which a
# fake `__class__` cannot fool. What it cannot stop (and need not): a
# program that forges the encoded text claims a value, exactly as if it had
# returned that value; the host compares it with an expected value the guest
# never sees.


def _typed_codec(
    _type=type,
    _issubclass=issubclass,
    _bool=bool,
    _int=int,
    _float=float,
    _str=str,
    _bytes=bytes,
    _bytearray=bytearray,
    _complex=complex,
    _list=list,
    _tuple=tuple,
    _set=set,
    _frozenset=frozenset,
    _dict=dict,
    _TypeError=TypeError,
    _ValueError=ValueError,
    _RecursionError=RecursionError,
):
    """Returns (encode, decode): Python data -> typed JSON text, and parsed
    typed JSON (what json's scanner returns) -> Python data."""
    import sys
    from _json import encode_basestring_ascii as quote

    modules = sys.modules
    get_module = _dict.get
    int_repr = _int.__repr__
    int_format = _int.__format__
    bit_length = _int.bit_length
    float_repr = _float.__repr__
    str_str = _str.__str__
    join = _str.join
    bytes_hex = _bytes.hex
    bytearray_hex = _bytearray.hex
    complex_parts = _complex.__getnewargs__
    list_iter = _list.__iter__
    tuple_iter = _tuple.__iter__
    set_iter = _set.__iter__
    frozenset_iter = _frozenset.__iter__
    dict_items = _dict.items
    fromhex = _bytes.fromhex
    # Deepest nesting encoded; deeper is unserialisable, not a crash.
    max_depth = 400
    # Ints longer than this many bits go as hex: decimal text of ints over
    # 4300 digits is refused by CPython (sys.int_info.str_digits_check_threshold).
    max_decimal_bits = 12000

    def hex_of(n):
        return quote(int_format(n, "x"))

    def encode_float(x):
        text = float_repr(x)
        if text == "inf" or text == "-inf" or text == "nan":
            return '{"float":"' + text + '"}'
        return text

    def encode(v, depth=0):
        if depth > max_depth:
            raise _RecursionError("the value is nested deeper than " + int_repr(max_depth))
        t = _type(v)
        if v is None:
            return "null"
        if t is _bool:
            return "true" if v else "false"
        if _issubclass(t, _int):
            if bit_length(v) > max_decimal_bits:
                return '{"hexint":' + hex_of(v) + "}"
            return int_repr(v)
        if _issubclass(t, _float):
            return encode_float(v)
        if _issubclass(t, _str):
            return quote(str_str(v))
        if _issubclass(t, _bytes):
            return '{"bytes":"' + bytes_hex(v) + '"}'
        if _issubclass(t, _bytearray):
            return '{"bytes":"' + bytearray_hex(v) + '"}'
        if _issubclass(t, _complex):
            re, im = complex_parts(v)
            return '{"complex":[' + encode_float(re) + "," + encode_float(im) + "]}"
        d = depth + 1
        if _issubclass(t, _list):
            return "[" + join(",", [encode(x, d) for x in list_iter(v)]) + "]"
        if _issubclass(t, _tuple):
            return '{"tuple":[' + join(",", [encode(x, d) for x in tuple_iter(v)]) + "]}"
        if _issubclass(t, _set):
            return '{"set":[' + join(",", [encode(x, d) for x in set_iter(v)]) + "]}"
        if _issubclass(t, _frozenset):
            return '{"frozenset":[' + join(",", [encode(x, d) for x in frozenset_iter(v)]) + "]}"
        if _issubclass(t, _dict):
            pairs = ["[" + encode(k, d) + "," + encode(x, d) + "]" for k, x in dict_items(v)]
            return '{"dict":[' + join(",", pairs) + "]}"
        fractions = get_module(modules, "fractions")
        if fractions is not None and _issubclass(t, fractions.Fraction):
            return ratio(v.numerator, v.denominator)
        for name in ("decimal", "_pydecimal"):
            decimal = get_module(modules, name)
            if decimal is not None and _issubclass(t, decimal.Decimal):
                if v.is_finite():
                    n, m = v.as_integer_ratio()
                    return ratio(n, m)
                if v.is_infinite():
                    return '{"float":"' + ("-inf" if v.is_signed() else "inf") + '"}'
                return '{"float":"nan"}'
        raise _TypeError("a " + _str(t.__name__) + " has no data form (return built-in types)")

    def ratio(n, m):
        if _type(n) is not _int or _type(m) is not _int or m == 0:
            raise _ValueError("not a ratio of ints")
        return '{"ratio":[' + hex_of(n) + "," + hex_of(m) + "]}"

    def decode(j):
        t = _type(j)
        if t is _list:
            return [decode(x) for x in j]
        if t is not _dict:
            return j
        for tag, body in dict_items(j):
            break
        else:
            raise _ValueError("an empty typed value")
        if tag == "tuple":
            return _tuple([decode(x) for x in body])
        if tag == "set":
            return _set([decode(x) for x in body])
        if tag == "frozenset":
            return _frozenset([decode(x) for x in body])
        if tag == "dict":
            return {decode(k): decode(x) for k, x in body}
        if tag == "bytes":
            return fromhex(body)
        if tag == "float":
            return _float(body)
        if tag == "complex":
            return _complex(decode(body[0]), decode(body[1]))
        if tag == "hexint":
            return _int(body, 16)
        raise _ValueError("unknown typed value " + tag)

    return encode, decode
