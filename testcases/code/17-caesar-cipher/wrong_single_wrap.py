import sys

first, _, text = sys.stdin.read().partition("\n")
k = int(first)
out = []
for ch in text:
    if "a" <= ch <= "z" or "A" <= ch <= "Z":
        top = "z" if ch.islower() else "Z"
        c = ord(ch) + k
        if c > ord(top):
            c -= 26
        elif c < ord(top) - 25:
            c += 26
        out.append(chr(c))
    else:
        out.append(ch)
sys.stdout.write("".join(out))
