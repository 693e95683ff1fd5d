import sys

data = sys.stdin.buffer.read().split()
n = int(data[0])
best = 0
cur = 0
for tok in data[1:n + 1]:
    cur = max(0, cur + int(tok))
    best = max(best, cur)
print(best)
