def power_sum(n, k):
    total = 0
    for i in range(1, n):
        total += i ** k
    return total
