words = [f"w{(i * 7919) % 5003}" for i in range(1_500_000)]
counts = {}
for w in words:
    counts[w] = counts.get(w, 0) + 1
print(len(counts), max(counts.values()))
