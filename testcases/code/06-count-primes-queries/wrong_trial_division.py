def is_prime(m):
    if m < 2:
        return False
    d = 2
    while d * d <= m:
        if m % d == 0:
            return False
        d += 1
    return True


q = int(input())
for _ in range(q):
    n = int(input())
    print(sum(1 for m in range(n + 1) if is_prime(m)))
