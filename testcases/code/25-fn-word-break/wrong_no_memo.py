class Solution:
    def word_break(self, s, words):
        if s == "":
            return True
        for w in words:
            if w and s.startswith(w) and self.word_break(s[len(w):], words):
                return True
        return False
