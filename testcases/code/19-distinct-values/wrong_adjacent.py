n = int(input())
a = list(map(int, input().split()))
count = 0
for i in range(n):
    if i == 0 or a[i] != a[i - 1]:
        count += 1
print(count)
