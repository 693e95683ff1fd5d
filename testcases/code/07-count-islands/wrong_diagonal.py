import sys

data = sys.stdin.read().split()
r, c = int(data[0]), int(data[1])
grid = data[2:2 + r]
seen = [[False] * c for _ in range(r)]
islands = 0
for i in range(r):
    for j in range(c):
        if grid[i][j] == "#" and not seen[i][j]:
            islands += 1
            seen[i][j] = True
            stack = [(i, j)]
            while stack:
                y, x = stack.pop()
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < r and 0 <= nx < c and grid[ny][nx] == "#" and not seen[ny][nx]:
                            seen[ny][nx] = True
                            stack.append((ny, nx))
print(islands)
