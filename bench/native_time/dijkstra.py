import heapq
n = 120_000
adj = [[] for _ in range(n)]
for u in range(n):
    for k in (1, 7, 31):
        v = (u * k + 13) % n
        adj[u].append((v, (u * 131 + v) % 100 + 1))
dist = [float("inf")] * n
dist[0] = 0
heap = [(0, 0)]
while heap:
    d, u = heapq.heappop(heap)
    if d > dist[u]:
        continue
    for v, w in adj[u]:
        if d + w < dist[v]:
            dist[v] = d + w
            heapq.heappush(heap, (d + w, v))
print(sum(x for x in dist if x != float("inf")))
