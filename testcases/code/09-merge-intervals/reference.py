import sys

data = sys.stdin.read().split()
n = int(data[0])
pairs = sorted((int(data[1 + 2 * k]), int(data[2 + 2 * k])) for k in range(n))
merged = []
for l, r in pairs:
    if merged and l <= merged[-1][1]:
        if r > merged[-1][1]:
            merged[-1][1] = r
    else:
        merged.append([l, r])
out = [str(len(merged))]
out.extend(f"{l} {r}" for l, r in merged)
print("\n".join(out))
