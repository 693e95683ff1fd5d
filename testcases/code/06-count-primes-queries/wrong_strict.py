import sys
from itertools import accumulate

data = sys.stdin.read().split()
q = int(data[0])
queries = [int(x) for x in data[1:q + 1]]
limit = max(queries, default=0)
sieve = bytearray([1]) * (limit + 1)
sieve[0:2] = b"\x00\x00"[: min(2, limit + 1)]
i = 2
while i * i <= limit:
    if sieve[i]:
        sieve[i * i :: i] = bytes(len(range(i * i, limit + 1, i)))
    i += 1
prefix = list(accumulate(sieve))
# counts primes strictly below n
print("\n".join(str(prefix[n - 1] if n > 0 else 0) for n in queries))
