n = int(input())
pairs = [tuple(map(int, input().split())) for _ in range(n)]
merged = []
for l, r in pairs:
    if merged and l <= merged[-1][1] and r >= merged[-1][0]:
        merged[-1][0] = min(merged[-1][0], l)
        merged[-1][1] = max(merged[-1][1], r)
    else:
        merged.append([l, r])
print(len(merged))
for l, r in merged:
    print(l, r)
