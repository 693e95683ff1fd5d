import sys


def add(a, b):
    assert sys._getframe(0).f_code.co_name == 'add'
    return a + b
