import sys

data = sys.stdin.read().split()
r, c = int(data[0]), int(data[1])
grid = [bytearray(row, "ascii") for row in data[2:2 + r]]
seen = [bytearray(c) for _ in range(r)]
islands = 0
for i in range(r):
    for j in range(c):
        if grid[i][j] == 35 and not seen[i][j]:
            islands += 1
            seen[i][j] = 1
            stack = [(i, j)]
            while stack:
                y, x = stack.pop()
                for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= ny < r and 0 <= nx < c and grid[ny][nx] == 35 and not seen[ny][nx]:
                        seen[ny][nx] = 1
                        stack.append((ny, nx))
print(islands)
