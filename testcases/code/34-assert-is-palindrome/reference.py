def is_palindrome(s: str) -> bool:
    kept = [ch.lower() for ch in s if ch.isalnum()]
    return kept == kept[::-1]
