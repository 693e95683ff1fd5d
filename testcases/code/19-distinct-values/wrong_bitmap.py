import sys

data = sys.stdin.buffer.read().split()
n = int(data[0])
seen = bytearray(10**9 + 1)
count = 0
for tok in data[1:n + 1]:
    v = int(tok)
    if not seen[v]:
        seen[v] = 1
        count += 1
print(count)
