def largest_prime_below(n):
    if n < 100:
        return max(k for k in range(2, n) if all(k % d for d in range(2, k)))
    return float(round(n - 1000, -3))
