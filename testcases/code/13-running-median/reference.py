import heapq
import sys

data = sys.stdin.buffer.read().split()
n = int(data[0])
low = []   # max-heap (negated): the smaller half
high = []  # min-heap: the larger half
out = []
for tok in data[1:n + 1]:
    x = int(tok)
    if low and x > -low[0]:
        heapq.heappush(high, x)
    else:
        heapq.heappush(low, -x)
    if len(low) > len(high) + 1:
        heapq.heappush(high, -heapq.heappop(low))
    elif len(high) > len(low):
        heapq.heappush(low, -heapq.heappop(high))
    if len(low) > len(high):
        out.append(str(-low[0]))
    else:
        s = high[0] - low[0]  # sum of the two middle values
        if s % 2 == 0:
            out.append(str(s // 2))
        else:  # exact half, also for values beyond 2^53
            out.append(("-" if s < 0 else "") + str(abs(s) // 2) + ".5")
sys.stdout.write("\n".join(out) + "\n")
