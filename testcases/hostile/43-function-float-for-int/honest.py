def largest_prime_below(n):
    k = n - 1
    while k > 1:
        if k % 2 and all(k % d for d in range(3, int(k**0.5) + 1, 2)) or k == 2:
            return k
        k -= 1
    return None
