import random
random.seed(1)
rows = [(random.randrange(1000), random.random(), i) for i in range(300_000)]
rows.sort(key=lambda r: (r[0], -r[1]))
print(rows[0][2], rows[-1][2])
