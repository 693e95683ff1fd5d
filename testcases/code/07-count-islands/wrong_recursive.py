import sys

data = sys.stdin.read().split()
r, c = int(data[0]), int(data[1])
grid = data[2:2 + r]
seen = [[False] * c for _ in range(r)]


def fill(y, x):
    if y < 0 or y >= r or x < 0 or x >= c or seen[y][x] or grid[y][x] != "#":
        return
    seen[y][x] = True
    fill(y - 1, x)
    fill(y + 1, x)
    fill(y, x - 1)
    fill(y, x + 1)


islands = 0
for i in range(r):
    for j in range(c):
        if grid[i][j] == "#" and not seen[i][j]:
            islands += 1
            fill(i, j)
print(islands)
