def longest_unique(s):
    return len(set(s))
