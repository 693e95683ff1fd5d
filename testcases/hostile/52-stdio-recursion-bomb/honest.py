import sys

sys.setrecursionlimit(10**5)


def depth(n):
    return 0 if n == 0 else 1 + depth(n - 1)


assert depth(5000) == 5000
a, b = map(int, input().split())
print(a + b)
