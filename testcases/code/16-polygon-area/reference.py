import sys

data = sys.stdin.read().split()
n = int(data[0])
pts = [(float(data[1 + 2 * k]), float(data[2 + 2 * k])) for k in range(n)]
twice = 0.0
for k in range(n):
    x1, y1 = pts[k]
    x2, y2 = pts[(k + 1) % n]
    twice += x1 * y2 - x2 * y1
print(f"{abs(twice) / 2:.6f}")
