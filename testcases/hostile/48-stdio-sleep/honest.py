import time

time.sleep(0.05)
a, b = map(int, input().split())
print(a + b)
