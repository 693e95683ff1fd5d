import bisect

n = int(input())
values = list(map(int, input().split()))
window = []
for x in values[:n]:
    bisect.insort(window, x)
    m = len(window)
    if m % 2:
        print(window[m // 2])
    else:
        print((window[m // 2 - 1] + window[m // 2]) // 2)
