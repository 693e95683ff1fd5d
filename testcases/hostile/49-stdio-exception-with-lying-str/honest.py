class Done(Exception):
    def __str__(self):
        return 'done'


a, b = map(int, input().split())
print(a + b)
try:
    raise Done()
except Done:
    pass
