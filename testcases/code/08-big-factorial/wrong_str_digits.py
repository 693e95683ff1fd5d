import math

t = int(input())
for _ in range(t):
    print(math.factorial(int(input())))
