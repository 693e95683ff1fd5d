a = "".join(chr(97 + (i * 7) % 26) for i in range(1200))
b = "".join(chr(97 + (i * 11) % 26) for i in range(1200))
prev = [0] * (len(b) + 1)
for x in a:
    cur = [0]
    for j, y in enumerate(b):
        cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
    prev = cur
print(prev[-1])
