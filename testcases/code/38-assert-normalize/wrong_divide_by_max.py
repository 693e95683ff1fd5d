def normalize(values):
    if not values:
        return []
    hi = max(values)
    if hi == 0:
        return [0.0] * len(values)
    return [v / hi for v in values]
