import string

ALLOWED = set(string.ascii_lowercase + string.digits)


def is_palindrome(s: str) -> bool:
    kept = [ch for ch in s.lower() if ch in ALLOWED]
    return kept == kept[::-1]
