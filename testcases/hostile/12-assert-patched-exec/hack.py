import builtins

builtins.exec = lambda *a, **k: None
builtins.compile = lambda *a, **k: None
