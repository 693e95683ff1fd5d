DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
t = int(input())
for _ in range(t):
    b1, b2, x = input().split()
    n = int(x, int(b1))
    b = int(b2)
    if n == 0:
        print(0)
        continue
    out = ""
    while n > 0:
        out = DIGITS[n % b] + out
        n //= b
    print(out)
