import sys
from collections import deque

r, c = map(int, sys.stdin.readline().split())
grid = [sys.stdin.readline().strip() for _ in range(r)]
start = goal = None
for i, row in enumerate(grid):
    for j, ch in enumerate(row):
        if ch == "S":
            start = (i, j)
        elif ch == "T":
            goal = (i, j)
dist = [[-1] * c for _ in range(r)]
dist[start[0]][start[1]] = 0
queue = deque([start])
while queue:
    y, x = queue.popleft()
    if (y, x) == goal:
        break
    for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
        if 0 <= ny < r and 0 <= nx < c and grid[ny][nx] != "#" and dist[ny][nx] < 0:
            dist[ny][nx] = dist[y][x] + 1
            queue.append((ny, nx))
print(dist[goal[0]][goal[1]])
