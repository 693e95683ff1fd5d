n = int(input())
for width in range(1, n, 2):
    print("*" * width)
