def pairs(a, b):
    yield a
    yield b


def add(a, b):
    return sum(pairs(a, b))
