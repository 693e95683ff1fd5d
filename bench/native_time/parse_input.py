import sys
data = sys.stdin.buffer.read().split()
n = int(data[0])
xs = sorted(map(int, data[1 : n + 1]))
total = 0
for i, x in enumerate(xs):
    total += x * (i % 3)
print(total)
