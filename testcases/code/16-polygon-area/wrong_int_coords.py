n = int(input())
pts = [tuple(map(int, input().split())) for _ in range(n)]
s = 0
for k in range(n):
    x1, y1 = pts[k]
    x2, y2 = pts[(k + 1) % n]
    s += x1 * y2 - x2 * y1
print(abs(s) / 2)
