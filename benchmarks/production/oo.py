"""Object-oriented: small classes, properties, methods and dunder calls; SIZE units.
Usage: python oo.py SIZE"""
import sys


class Vec:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __add__(self, other):
        return Vec(self.x + other.x, self.y + other.y)

    def scale(self, k):
        return Vec(self.x * k, self.y * k)

    @property
    def norm2(self):
        return self.x * self.x + self.y * self.y


class Body:
    def __init__(self, i):
        self.pos = Vec(i, -i)
        self.vel = Vec(1, 1)

    def step(self, dt):
        self.pos = self.pos + self.vel.scale(dt)
        return self.pos.norm2


def unit():
    bodies = [Body(i) for i in range(100)]
    total = 0
    for _ in range(1200):
        for b in bodies:
            total += b.step(0.01)
    return total


for _ in range(int(sys.argv[1])):
    unit()
