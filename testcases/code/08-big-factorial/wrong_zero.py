import sys

sys.set_int_max_str_digits(0)
t = int(input())
for _ in range(t):
    n = int(input())
    f = n
    for k in range(2, n):
        f *= k
    print(f)
