def total(xs):
    return sum(xs)


def add(a, b):
    return total([a, b])
