from collections import deque
n = 500_000
adj = [[] for _ in range(n)]
for v in range(1, n):
    u = (v * 37) % v if v > 1 else 0
    adj[u].append(v)
    adj[v].append(u)
dist = [-1] * n
dist[0] = 0
q = deque([0])
while q:
    u = q.popleft()
    for w in adj[u]:
        if dist[w] < 0:
            dist[w] = dist[u] + 1
            q.append(w)
print(max(dist))
