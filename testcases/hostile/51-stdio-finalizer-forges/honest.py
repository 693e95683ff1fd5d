import gc
import sys

gc.collect()


class Quiet:
    def __del__(self):
        sys.stderr.write('collected\n')


quiet = Quiet()
a, b = map(int, input().split())
print(a + b)
