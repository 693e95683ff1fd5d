import gc

gc.collect()


def add(a, b):
    return a + b
