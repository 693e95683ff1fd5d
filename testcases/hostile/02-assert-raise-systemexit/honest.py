def add(a, b):
    return a + b

try:
    raise SystemExit
except SystemExit:
    pass
