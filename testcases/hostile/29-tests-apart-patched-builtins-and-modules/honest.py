import builtins
import math

builtins.print = builtins.print
math.tau = math.tau


def add(a, b):
    return a + b
