import sys

for line in sys.stdin:
    words = line.split()
    if words:
        print(" ".join(reversed(words)))
