f = 1
for i in range(2, 40000):
    f *= i
x = pow(3, 200_000, 10**9 + 7)
y = 7**30000
print(f.bit_length(), x, y % 1000003, (f // y) % 998244353)
