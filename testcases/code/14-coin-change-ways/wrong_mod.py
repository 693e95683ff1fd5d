import sys

MOD = 10**9 + 7
data = sys.stdin.read().split()
n, amount = int(data[0]), int(data[1])
coins = [int(x) for x in data[2:2 + n]]
ways = [0] * (amount + 1)
ways[0] = 1
for coin in coins:
    for v in range(coin, amount + 1):
        ways[v] = (ways[v] + ways[v - coin]) % MOD
print(ways[amount])
