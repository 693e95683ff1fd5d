import sys
from collections import Counter

counts = Counter(sys.stdin.read().split())
for word, c in sorted(counts.items(), key=lambda kv: -kv[1]):
    print(word, c)
