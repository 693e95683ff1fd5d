def letters(s):
    return list(s)
