t = int(raw_input())
for _ in range(t):
    parts = raw_input().split()
    n = int(parts[0])
    values = [float(x) for x in parts[1:n + 1]]
    print "%.9f" % (sum(values) / n)
