DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
t = int(input())
for _ in range(t):
    b1, b2, x = input().split()
    n = int(x, int(b1))
    b = int(b2)
    sign = "-" if n < 0 else ""
    n = abs(n)
    out = ""
    while True:
        out = DIGITS[n % b] + out
        n //= b
        if n == 0:
            break
    print(sign + out)
