import math
acc = 0.0
for i in range(1, 2_000_000):
    acc += math.sqrt(i) * math.sin(i) / (1.0 + math.log(i))
print(f"{acc:.6f}")
