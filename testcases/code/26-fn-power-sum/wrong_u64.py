def power_sum(n, k):
    mask = (1 << 64) - 1
    total = 0
    for i in range(1, n + 1):
        total = (total + pow(i, k, 1 << 64)) & mask
    return total
