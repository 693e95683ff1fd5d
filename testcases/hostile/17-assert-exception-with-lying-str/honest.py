class Oops(Exception):
    def __str__(self):
        return 'handled'


def add(a, b):
    try:
        raise Oops()
    except Oops as e:
        assert str(e) == 'handled'
    return a + b
