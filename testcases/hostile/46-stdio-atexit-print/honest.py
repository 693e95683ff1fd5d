import atexit
import sys

atexit.register(sys.stderr.write, 'bye\n')
a, b = map(int, input().split())
print(a + b)
