VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


class Solution:
    def roman_to_int(self, s: str) -> int:
        total = 0
        for k, ch in enumerate(s):
            v = VALUES[ch]
            if k + 1 < len(s) and VALUES[s[k + 1]] > v:
                total -= v
            else:
                total += v
        return total
