import sys

data = sys.stdin.buffer.read().split()
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
# answer the queries in increasing order, counting primes between consecutive ones
answer = {}
count = 0
prev = 0
for n in sorted(set(queries)):
    count += sieve.count(1, prev, n + 1)
    prev = n + 1
    answer[n] = count
sys.stdout.write("\n".join(str(answer[n]) for n in queries) + "\n")
