t = int(input())
for _ in range(t):
    parts = input().split()
    n = int(parts[0])
    values = [float(x) for x in parts[1:n + 1]]
    print(f"{sum(values) / n:.9f}")
