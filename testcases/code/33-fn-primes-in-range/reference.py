import math
from itertools import compress


class Solution:
    def count_primes(self, lo, hi):
        lo = max(lo, 2)
        if hi < lo:
            return 0
        root = math.isqrt(hi)
        base = bytearray([1]) * (root + 1)
        base[0:2] = b"\x00\x00"[: min(2, root + 1)]
        for i in range(2, math.isqrt(root) + 1):
            if base[i]:
                base[i * i :: i] = bytes(len(range(i * i, root + 1, i)))
        seg = bytearray([1]) * (hi - lo + 1)
        for p in compress(range(root + 1), base):
            first = max(p * p, (lo + p - 1) // p * p)
            if first <= hi:
                seg[first - lo :: p] = bytes(len(range(first, hi + 1, p)))
        return sum(seg)
