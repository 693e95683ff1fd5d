LIMIT = 10**9


def add(a, b):
    assert 'LIMIT' in globals()
    return a + b
