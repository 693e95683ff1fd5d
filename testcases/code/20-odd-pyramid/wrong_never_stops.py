n = int(input())
width = 1
while True:
    print("*" * width)
    if width == n:
        break
    width += 2
