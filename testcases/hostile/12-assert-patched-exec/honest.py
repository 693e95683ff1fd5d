def add(a, b):
    return a + b

import builtins

builtins.print = builtins.print
