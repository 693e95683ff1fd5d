parts = []
for i in range(1_000_000):
    parts.append(f"{i}:{i * i % 97}")
text = ",".join(parts)
print(len(text), text.count("7"), len(text.split(",")))
