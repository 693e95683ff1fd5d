import sys

sys.setrecursionlimit(5000)


def add(a, b):
    return a + b
