def f(n):
    return f(n + 1)


f(0)
a, b = map(int, input().split())
print(a + b)
