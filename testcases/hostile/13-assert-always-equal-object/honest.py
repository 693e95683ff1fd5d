class Pair:
    def __init__(self, a, b):
        self.a, self.b = a, b

    def __eq__(self, other):
        return (self.a, self.b) == (other.a, other.b)


def add(a, b):
    return Pair(a, b).a + Pair(a, b).b
