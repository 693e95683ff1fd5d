import sys


class Quiet:
    def __del__(self):
        sys.stderr.write('collected\n')


def add(a, b):
    Quiet()
    return a + b
