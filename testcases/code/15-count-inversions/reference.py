import sys
from bisect import bisect_right

data = sys.stdin.buffer.read().split()
n = int(data[0])
runs = [[int(x)] for x in data[1:n + 1]]
inversions = 0
# bottom-up merge sort; cross inversions of two sorted runs counted with bisect
while len(runs) > 1:
    merged = []
    for k in range(0, len(runs) - 1, 2):
        left, right = runs[k], runs[k + 1]
        nl = len(left)
        for x in right:
            inversions += nl - bisect_right(left, x)
        merged.append(sorted(left + right))
    if len(runs) % 2:
        merged.append(runs[-1])
    runs = merged
print(inversions)
