import sys
from collections import Counter

counts = Counter(sys.stdin.read().lower().split())
for word, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
    print(word, c)
