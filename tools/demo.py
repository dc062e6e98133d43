"""A demo workload for the README's quick start: a small "web request" pipeline.

Parses JSON requests, renders templates through many small helper calls, and hashes
responses, so the report shows self time, total time, exact call counts and a call tree.
"""
import hashlib
import json
import re


def parse(raw):
    return json.loads(raw)


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_row(item):
    return "<tr><td>" + escape(item["name"]) + "</td><td>" + str(item["qty"]) + "</td></tr>"


def render(request):
    rows = [render_row(item) for item in request["items"]]
    return "<table>" + "".join(rows) + "</table>"


def checksum(body):
    digest = body.encode()
    for _ in range(20):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


WORD = re.compile(r"[a-z]+")


def count_words(body):
    counts = {}
    for w in WORD.findall(body):
        counts[w] = counts.get(w, 0) + 1
    return counts


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def handle(raw):
    request = parse(raw)
    body = render(request)
    return checksum(body), count_words(body), fib(request["depth"])


def main():
    raw = json.dumps({"items": [{"name": f"widget <{i}> & co", "qty": i} for i in range(60)],
                      "depth": 16})
    total = 0
    for _ in range(800):
        digest, words, f = handle(raw)
        total += f + len(words)
    print("handled 800 requests, checksum", digest[:16], "total", total)


if __name__ == "__main__":
    main()
