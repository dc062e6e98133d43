"""String and dict work: tokenising text, counting words in dicts,
formatting, joining, dict comprehension and merging.  Much of the time is
inside C builtins (str methods, dict ops) called from a few Python frames.
~1 s unprofiled on the reference machine (3.11).
"""
import sys

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu "
         "nu xi omicron pi rho sigma tau upsilon phi chi psi omega").split()


def make_text(n_lines):
    lines = []
    nw = len(WORDS)
    for i in range(n_lines):
        words = [WORDS[(i * 7 + j * 3) % nw] for j in range(12)]
        lines.append(" ".join(words) + f" #{i}")
    return "\n".join(lines)


def count_words(text):
    counts = {}
    for line in text.splitlines():
        for w in line.split():
            if w.startswith("#"):
                continue
            w = w.upper()
            counts[w] = counts.get(w, 0) + 1
    return counts


def render(counts):
    parts = []
    for k, v in sorted(counts.items()):
        parts.append("%s=%d" % (k.lower(), v))
        parts.append(f"{k[:3]}:{v:06d}")
    return ";".join(parts)


def index_lines(text):
    index = {}
    for no, line in enumerate(text.splitlines()):
        key = line[:5].strip()
        index.setdefault(key, []).append(no)
    merged = {**index, **{k + "_n": len(v) for k, v in index.items()}}
    return len(merged)


def main(n_lines=25_000, reps=3):
    total = 0
    for _ in range(reps):
        text = make_text(n_lines)
        counts = count_words(text)
        total += len(render(counts)) + index_lines(text)
        total += len(text.replace("a", "A").encode())
    return total


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
