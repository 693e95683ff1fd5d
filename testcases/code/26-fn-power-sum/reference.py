def power_sum(n, k):
    return sum(i ** k for i in range(1, n + 1))
