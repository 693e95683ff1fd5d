import os


def add(a, b):
    return a + b


assert os.getpid() >= 0
