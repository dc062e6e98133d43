"""Text processing, held out (written after the profiler was tuned on calls, oo and
gens): a tokenizer with re, word counts, a small recursive-descent parser and
evaluator, JSON round trips, sorting with key functions, string formatting; SIZE
units of about 0.5 s.  Usage: python text.py SIZE"""
import collections
import json
import re
import sys

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
         "omicron pi rho sigma tau upsilon phi chi psi omega").split()
TOKEN = re.compile(r"\s*(?:(\d+\.?\d*)|(.))")


def document(seed, n):
    out, x = [], seed
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(WORDS[x % len(WORDS)] + ("." if x % 17 == 0 else ""))
    return " ".join(out)


def tokens(expr):
    for number, op in TOKEN.findall(expr):
        if number:
            yield float(number)
        elif op.strip():
            yield op


class Parser:
    def __init__(self, expr):
        self.toks = list(tokens(expr))
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expr(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self):
        value = self.factor()
        while self.peek() in ("*", "/"):
            op, rhs = self.take(), self.factor()
            value = value * rhs if op == "*" else value / (rhs or 1.0)
        return value

    def factor(self):
        tok = self.take()
        if tok == "(":
            value = self.expr()
            self.take()
            return value
        if tok == "-":
            return -self.factor()
        return tok


def expression(seed, depth):
    if depth == 0:
        return str(seed % 97 + 1)
    op = "+-*/"[seed % 4]
    return f"({expression(seed * 7 + 1, depth - 1)} {op} {expression(seed * 13 + 5, depth - 1)})"


def report(counts):
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "\n".join(f"{word:<10}{count:>6}" for word, count in rows)


def unit():
    total = 0.0
    for seed in range(36):
        text = document(seed, 6000)
        counts = collections.Counter(w.strip(".") for w in text.split())
        sentences = [s for s in re.split(r"\.\s*", text) if s]
        data = json.loads(json.dumps({"counts": counts, "sentences": sentences[:200]}))
        total += len(report(data["counts"])) + len(data["sentences"])
        for k in range(25):
            total += Parser(expression(seed * 31 + k, 6)).expr()
    return total


for _ in range(int(sys.argv[1])):
    unit()
