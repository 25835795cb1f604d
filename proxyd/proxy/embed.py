#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn a file into a C source defining `const char NAME[]` and `NAME_len` (build time)."""
import sys

src, out, name = sys.argv[1:4]
data = open(src, "rb").read()
with open(out, "w") as f:
    f.write("/* generated from %s */\n#include <stddef.h>\n" % src.rsplit("/", 1)[-1])
    f.write("const char %s[] = {\n" % name)
    for i in range(0, len(data), 16):
        f.write("  " + ", ".join("0x%02x" % b for b in data[i:i + 16]) + ",\n")
    f.write("  0x00\n};\nconst size_t %s_len = %d;\n" % (name, len(data)))
