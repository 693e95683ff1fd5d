import sys

first, _, text = sys.stdin.read().partition("\n")
k = int(first) % 26
out = []
for ch in text:
    if "a" <= ch <= "z":
        out.append(chr((ord(ch) - 97 + k) % 26 + 97))
    elif "A" <= ch <= "Z":
        out.append(chr((ord(ch) - 65 + k) % 26 + 65))
    else:
        out.append(ch)
sys.stdout.write("".join(out))
