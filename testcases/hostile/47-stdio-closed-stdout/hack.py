import io

io.FileIO(1).close()
a, b = map(int, input().split())
print(a + b)
