import sys

r, c = map(int, sys.stdin.readline().split())
grid = [sys.stdin.readline().strip() for _ in range(r)]
for i in range(r):
    for j in range(c):
        if grid[i][j] == "S":
            start = (i, j)
        if grid[i][j] == "T":
            goal = (i, j)
# depth-first search: finds *a* path, not the shortest one
seen = {start: 0}
stack = [start]
answer = -1
while stack:
    y, x = stack.pop()
    if (y, x) == goal:
        answer = seen[(y, x)]
        break
    for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
        if 0 <= ny < r and 0 <= nx < c and grid[ny][nx] != "#" and (ny, nx) not in seen:
            seen[(ny, nx)] = seen[(y, x)] + 1
            stack.append((ny, nx))
print(answer)
