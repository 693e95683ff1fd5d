import sys

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def to_base(n, b):
    if n == 0:
        return "0"
    sign = "-" if n < 0 else ""
    n = abs(n)
    out = []
    while n:
        n, d = divmod(n, b)
        out.append(DIGITS[d])
    return sign + "".join(reversed(out))


lines = sys.stdin.read().splitlines()
t = int(lines[0])
for line in lines[1:t + 1]:
    b1, b2, x = line.split()
    print(to_base(int(x, int(b1)), int(b2)))
