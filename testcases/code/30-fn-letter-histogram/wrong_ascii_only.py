import string
from collections import Counter


def letter_histogram(text):
    return dict(Counter(ch for ch in text.lower() if ch in string.ascii_lowercase))
