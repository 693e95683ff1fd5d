class Money(int):
    def __repr__(self):
        return f'${int(self)}'


def add(a, b):
    return Money(a + b)
