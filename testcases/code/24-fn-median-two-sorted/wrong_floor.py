def median_sorted(a, b):
    merged = sorted(a + b)
    n = len(merged)
    if n % 2:
        return merged[n // 2]
    return (merged[n // 2 - 1] + merged[n // 2]) // 2
