import _host

_host.call(b'{"op": "result", "status": "raised", "kind": "X", "message": ""}')
_host.call(b'{"op": "compile_error", "kind": "SyntaxError", "message": "x", "in": "tests"}')
