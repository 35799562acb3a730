"""Seeded train / valid / test splits by piece, keeping every work in one split.

Pieces that share a work key (the same work in two encodings, e.g. a music21 copy of a corpus
file) form one group (union-find) and always land in the same split. With ``balance=True`` each
composer's groups are split in the given proportions separately, so every composer appears in
every split it has enough pieces for.
"""

from __future__ import annotations

import hashlib

import numpy as np


def group_by_keys(keys: dict[str, list[str]]) -> list[list[str]]:
    """Connected components of pieces sharing any key; deterministic order."""
    parent = {p: p for p in keys}

    def find(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    owner: dict[str, str] = {}
    for pid in sorted(keys):
        for k in keys[pid]:
            if k in owner:
                a, b = find(pid), find(owner[k])
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                owner[k] = pid
    groups: dict[str, list[str]] = {}
    for pid in sorted(keys):
        groups.setdefault(find(pid), []).append(pid)
    return [groups[g] for g in sorted(groups)]


def _seed_for(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def assign_splits(
    keys: dict[str, list[str]],
    composers: dict[str, str],
    seed: int = 0,
    valid: float = 0.08,
    test: float = 0.15,
    balance: bool = True,
) -> dict[str, str]:
    """piece id -> "train" | "valid" | "test". At least one valid and one test group if >= 3 groups."""
    groups = group_by_keys(keys)
    strata: dict[str, list[list[str]]] = {}
    for g in groups:
        strata.setdefault(composers.get(g[0], "") if balance else "", []).append(g)
    out: dict[str, str] = {}
    for name in sorted(strata):
        gs = strata[name]
        order = np.random.default_rng(_seed_for(seed, name)).permutation(len(gs))
        n = len(gs)
        n_test = int(round(n * test))
        n_valid = int(round(n * valid))
        for rank, gi in enumerate(order):
            split = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
            for pid in gs[gi]:
                out[pid] = split
    # small corpora: make sure valid and test are not empty
    n_groups = len(groups)
    if n_groups >= 3:
        for need in ("test", "valid"):
            if need not in out.values():
                order = np.random.default_rng(_seed_for(seed, need)).permutation(n_groups)
                for gi in order:
                    g = groups[gi]
                    if out[g[0]] == "train" and sum(v == "train" for v in out.values()) > len(g):
                        for pid in g:
                            out[pid] = need
                        break
    return out
