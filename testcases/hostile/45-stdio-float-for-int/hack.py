a, b = map(int, input().split())
s = a + b
print(float(round(s, -3)) if s > 1000 else s)
