"""Iterative post-order over a DAG (no recursion, so deep graphs are fine)."""
from __future__ import annotations


def postorder(root, children) -> list:
    """Every node reachable from `root`, each after all of `children(node)`."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(children(node)) if id(c) not in seen)
    return order
