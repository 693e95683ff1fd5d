def add(a, b):
    try:
        raise ValueError('negative')
    except ValueError as e:
        assert e.args == ('negative',)
    return a + b
