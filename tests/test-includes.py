#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The include graph of proxyd's modules has no circle, and no layer includes a header of a
layer above it.

A module is a .c file with its .h (conn.c + conn.h); a few modules are split over several
files that share a private header (PARTS below: http1-chars.h is the parser's, tls-internal.h
the TLS wrapper's), and those count as one. A module depends on another when one of its files
includes the other's header. Layers, lowest first: base, http, config, policy,
core, proxy (docs/architecture.md). The build enforces the layers through include
directories; this test names the offending include when it breaks, and checks the circles,
which the build does not see.

    tests/test-includes.py [SRCROOT]
"""
import os
import re
import sys

LAYERS = ["base", "http", "config", "policy", "core", "proxy"]
# files (stems) that are parts of one module
PARTS = {
    "http1-chars": "http1", "http1-fields": "http1", "http1-chunked": "http1",
    "config-schema": "config", "config-merge": "config", "config-settings": "config",
    "config-values": "config", "config-address": "config",
    "tls-internal": "tls", "tls-server": "tls", "tls-client": "tls", "tls-check": "tls",
    "exchange-upstream": "exchange",
    "h2-internal": "h2", "h2-request": "h2",
}


def scan(root):
    """module -> (layer, set of included header names); header name -> module"""
    mods, owner = {}, {}
    for layer in LAYERS:
        d = os.path.join(root, "proxyd", layer)
        for f in sorted(os.listdir(d)):
            if not f.endswith((".c", ".h")):
                continue
            stem = f.rsplit(".", 1)[0]
            mod = PARTS.get(stem, stem)
            m = mods.setdefault(mod, (layer, set()))
            if f.endswith(".h"):
                owner[f] = mod
            with open(os.path.join(d, f)) as fh:
                for line in fh:
                    inc = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                    if inc:
                        m[1].add((inc.group(1), f))
    return mods, owner


def cycles(graph):
    """every elementary circle found by a depth-first search, as a list of modules"""
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    # the checker itself, on a known graph
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []

    mods, owner = scan(root)
    if len(mods) < 20:
        print("FAIL - only %d modules found under %s/proxyd: wrong path?" % (len(mods), root))
        return 1
    bad = 0
    graph = {}
    for mod, (layer, incs) in sorted(mods.items()):
        for header, src in sorted(incs):
            dep = owner.get(header)
            if dep is None:
                print("FAIL - %s/%s includes \"%s\", which is no header of proxyd" % (layer, src, header))
                bad += 1
                continue
            if dep == mod:
                continue
            graph.setdefault(mod, set()).add(dep)
            dl = mods[dep][0]
            if LAYERS.index(dl) > LAYERS.index(layer):
                print("FAIL - %s/%s includes %s/%s: a lower layer uses a higher one" % (layer, src, dl, header))
                bad += 1
    for c in cycles(graph):
        print("FAIL - include circle: %s" % " -> ".join(c))
        bad += 1
    n_edges = sum(len(v) for v in graph.values())
    print("%d modules, %d dependencies checked; %d problems" % (len(mods), n_edges, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
