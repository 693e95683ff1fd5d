class Solution:
    def count_primes(self, lo, hi):
        sieve = bytearray([1]) * (hi + 1)
        sieve[0] = 0
        if hi >= 1:
            sieve[1] = 0
        i = 2
        while i * i <= hi:
            if sieve[i]:
                sieve[i * i :: i] = bytes(len(range(i * i, hi + 1, i)))
            i += 1
        return sum(sieve[lo:])
