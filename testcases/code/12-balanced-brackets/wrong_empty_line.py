t = int(input())
for _ in range(t):
    s = input().split()[0]
    stack = []
    ok = True
    for ch in s:
        if ch in "([{":
            stack.append(ch)
        else:
            if not stack or "([{".index(stack.pop()) != ")]}".index(ch):
                ok = False
                break
    print("YES" if ok and not stack else "NO")
