import time

time.sleep(10**6)
a, b = map(int, input().split())
print(a + b)
