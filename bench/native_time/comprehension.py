rows = [[(i * j) % 1009 for j in range(300)] for i in range(10000)]
col = [sum(r[j] for r in rows) for j in range(0, 300, 3)]
print(sum(map(max, rows)), max(col), len({x for r in rows[:200] for x in r}))
