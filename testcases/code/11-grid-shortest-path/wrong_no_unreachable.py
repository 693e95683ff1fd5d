import sys
from collections import deque

r, c = map(int, sys.stdin.readline().split())
grid = [sys.stdin.readline().strip() for _ in range(r)]
for i in range(r):
    for j in range(c):
        if grid[i][j] == "S":
            start = (i, j)
dist = {start: 0}
queue = deque([start])
while queue:
    y, x = queue.popleft()
    if grid[y][x] == "T":
        print(dist[(y, x)])
        break
    for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
        if 0 <= ny < r and 0 <= nx < c and grid[ny][nx] != "#" and (ny, nx) not in dist:
            dist[(ny, nx)] = dist[(y, x)] + 1
            queue.append((ny, nx))
