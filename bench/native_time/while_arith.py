best = 0
for start in range(1, 120_000):
    n, steps = start, 0
    while n != 1 and steps < 40:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    best = max(best, steps)
print(best)
