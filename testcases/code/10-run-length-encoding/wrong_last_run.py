t = int(input())
for _ in range(t):
    s = input().strip()
    out = ""
    run = 1
    for i in range(1, len(s)):
        if s[i] == s[i - 1]:
            run += 1
        else:
            out += s[i - 1] + str(run)
            run = 1
    print(out)
