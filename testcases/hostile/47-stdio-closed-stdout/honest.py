import io
import sys

a, b = map(int, input().split())
print(a + b)
sys.stdout.flush()
io.FileIO(1).close()
