import sys

a, b = map(float, sys.stdin.read().split())
print(int(a + b))
