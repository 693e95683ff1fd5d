class Money(int):
    pass


def add(a, b):
    return Money(a + b)
