import sys

sys.set_int_max_str_digits(0)
t = int(sys.stdin.readline())
out = []
for _ in range(t):
    n = int(sys.stdin.readline())
    f = 1
    for k in range(2, n + 1):
        f *= k
    out.append(str(f))
print("\n".join(out))
