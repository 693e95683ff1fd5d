import math


class Solution:
    def count_primes(self, lo, hi):
        if hi < lo:
            return 0
        root = math.isqrt(hi)
        base = [True] * (root + 1)
        primes = []
        for i in range(2, root + 1):
            if base[i]:
                primes.append(i)
                for m in range(i * i, root + 1, i):
                    base[m] = False
        seg = bytearray([1]) * (hi - lo + 1)
        if lo == 0:
            seg[0] = 0
        for p in primes:
            first = max(p * p, (lo + p - 1) // p * p)
            for m in range(first, hi + 1, p):
                seg[m - lo] = 0
        return sum(seg)
