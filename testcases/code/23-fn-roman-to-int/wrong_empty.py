class Solution:
    def roman_to_int(self, s: str) -> int:
        values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
        total = values[s[-1]]
        for a, b in zip(s, s[1:]):
            total += -values[a] if values[a] < values[b] else values[a]
        return total
