s = 0
for i in range(12_000_000):
    s += i
print(s)
