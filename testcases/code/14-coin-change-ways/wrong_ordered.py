import sys

data = sys.stdin.read().split()
n, amount = int(data[0]), int(data[1])
coins = [int(x) for x in data[2:2 + n]]
ways = [0] * (amount + 1)
ways[0] = 1
for v in range(1, amount + 1):
    for coin in coins:
        if coin <= v:
            ways[v] += ways[v - coin]
print(ways[amount])
