"""The benchmark behind the README's performance table: `python -m bench [--quick]`.

It starts the real service and a bare reference app (bench/bare.py) on the same server software,
loads both with wrk (bench/lua/) or, when wrk is missing in quick mode, a small built-in load
generator, and reports every figure as a ratio to the bare ceiling measured right before it.
"""
