"""Deterministic workload for tests/test_callcounts.py (and test_coexist.py).

Every construct whose calls a profiler might count differently: plain calls,
recursion, generators (yield from, close, throw, generator expressions, finalised
suspended generators), coroutines (asyncio and driven by hand), exceptions across
frames, classes (methods, __init__, properties, classmethods, staticmethods, class
bodies, dunder methods), lambdas, closures, comprehensions, decorators.

No two functions share a (file, first line, name) key: cProfile's pstats keeps only
one of them.  Executing this module runs nothing; call main().  main() returns a checksum that
must not depend on whether a profiler runs.
"""

import asyncio
import functools


# ----------------------------------------------------------------- plain calls

def leaf(x):
    return x + 1


def middle(x):
    return leaf(x) + leaf(x + 1)


def plain_calls(n):
    total = 0
    for i in range(n):
        total += middle(i)
    return total


# ----------------------------------------------------------------- recursion

def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def is_even(n):
    return True if n == 0 else is_odd(n - 1)


def is_odd(n):
    return False if n == 0 else is_even(n - 1)


# ----------------------------------------------------------------- generators

def count_up(n):
    for i in range(n):
        yield i


def delegate(n):
    yield -1
    result = yield from count_up(n)
    yield -2
    return result


def sub_returning():
    yield "a"
    return 42


def delegate_result():
    value = yield from sub_returning()
    yield value


def closable():
    try:
        yield 1
        yield 2
    finally:
        cleanup_marker()


def cleanup_marker():
    return None


def catcher():
    caught = 0
    while True:
        try:
            yield caught
        except ValueError:
            caught += 1


def inner_catcher():
    while True:
        try:
            yield "inner"
        except KeyError:
            yield "inner caught"


def outer_delegating():
    yield from inner_catcher()


def generators():
    out = list(count_up(5))
    out += list(delegate(3))
    out += list(delegate_result())
    g = closable()
    next(g)
    g.close()                      # resumes with GeneratorExit; finally runs
    unstarted = closable()
    unstarted.close()              # never started: frame is never run
    c = catcher()
    next(c)
    out.append(c.throw(ValueError))
    out.append(c.throw(ValueError))
    c.close()
    d = outer_delegating()
    next(d)
    out.append(d.throw(KeyError))  # thrown into the sub-generator through yield from
    out.append(next(d))
    d.close()
    s = sum(x * x for x in range(6))         # generator expression
    t = sum(1 for _ in count_up(4))
    abandoned = count_up(10)
    next(abandoned)
    del abandoned                  # finalised while suspended: resumed by close()
    return out, s, t


# ----------------------------------------------------------------- coroutines

async def co_leaf(x):
    await asyncio.sleep(0)
    return x * 2


async def co_middle(x):
    a = await co_leaf(x)
    b = await co_leaf(x + 1)
    return a + b


async def co_main():
    r = await co_middle(1)
    rs = await asyncio.gather(co_middle(2), co_leaf(3))
    return r + sum(rs)


class Suspend:
    def __await__(self):
        value = yield "suspended"
        return value


async def manual_coro():
    got = await Suspend()
    got2 = await Suspend()
    return got + got2


def drive_manually():
    c = manual_coro()
    first = c.send(None)
    c.send(10)
    try:
        c.send(20)
    except StopIteration as e:
        return first, e.value
    raise AssertionError("coroutine did not finish")


def coroutines():
    return asyncio.run(co_main()), drive_manually()


# ----------------------------------------------------------------- exceptions

class AppError(Exception):
    pass


def raise_deep(n):
    if n == 0:
        raise AppError("bottom")
    return raise_deep(n - 1)


def catch_middle(n):
    try:
        return raise_deep(n)
    except AppError:
        return recover()


def recover():
    return "recovered"


def reraise():
    try:
        raise_deep(2)
    except AppError as e:
        raise KeyError("wrapped") from e


def exceptions():
    results = [catch_middle(4) for _ in range(3)]
    try:
        reraise()
    except KeyError:
        results.append("keyerror")
    try:
        {}["missing"]
    except KeyError:
        results.append(recover())
    return results


# ----------------------------------------------------------------- classes

class Base:
    registry = [n for n in range(3)]   # a comprehension in a class body

    def __init__(self, v):
        self.v = v

    def method(self):
        return self.v + 1

    @property
    def prop(self):
        return self.v * 10

    @prop.setter
    def prop(self, value):
        self.v = value // 10

    @classmethod
    def make(cls, v):
        return cls(v)

    @staticmethod
    def helper(x):
        return x - 1

    def __repr__(self):
        return f"Base({self.v})"

    def __eq__(self, other):
        return isinstance(other, Base) and self.v == other.v

    __hash__ = None


class Derived(Base):
    def __init__(self, v):
        super().__init__(v + 1)

    def method(self):
        return super().method() * 2

    def __len__(self):
        return self.v


def classes():
    objs = [Base.make(i) for i in range(3)]
    objs += [Derived(i) for i in range(2)]
    total = 0
    for o in objs:
        total += o.method() + o.prop + Base.helper(o.v)
        o.prop = 50
    total += len(objs[-1])
    text = repr(objs[0])
    same = objs[0] == Base(5)

    class Local:                     # a class body run on each call
        attr = leaf(1)

        def __call__(self, x):
            return x + self.attr

    total += Local()(3)
    return total, text, same


# ----------------------------------------------------------------- lambdas, closures

def make_adder(k):
    def add(x):
        return x + k
    return add


def make_counter():
    count = 0

    def bump():
        nonlocal count
        count += 1
        return count
    return bump


def closures():
    add3 = make_adder(3)
    bump = make_counter()
    square = lambda v: v * v
    vals = [add3(i) for i in range(4)]
    vals += [bump() for _ in range(5)]
    vals += list(map(square, range(4)))
    vals += sorted(range(6), key=lambda v: -v)
    return vals


# ----------------------------------------------------------------- comprehensions

def comprehensions():
    a = [leaf(i) for i in range(4)]
    b = {i: leaf(i) for i in range(3)}
    c = {leaf(i) for i in range(2)}
    # Nested comprehensions, on separate lines: cProfile keys functions by
    # (file, line, name) and keeps only one of two code objects sharing a key.
    d = [
        [j for j in range(i)]
        for i in range(3)
    ]
    return a, b, c, d


# ----------------------------------------------------------------- decorators

def traced(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


def repeat(times):
    def deco(func):
        def many(*args):
            return [func(*args) for _ in range(times)]
        return many
    return deco


@traced
def decorated(x):
    return leaf(x)


@repeat(3)
@traced
def decorated_twice(x):
    return x


@functools.lru_cache(maxsize=None)
def cached(n):
    return n if n < 2 else cached(n - 1) + cached(n - 2)


def decorators():
    return [decorated(i) for i in range(3)], decorated_twice(7), cached(15)


# ----------------------------------------------------------------- main

def main():
    return [
        plain_calls(20),
        fib(12),
        is_even(9),
        generators(),
        coroutines(),
        exceptions(),
        classes(),
        closures(),
        comprehensions(),
        decorators(),
    ]
