def digital_root(n: int) -> int:
    return 1 + (n - 1) % 9
