#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Size limits of the sources under proxyd/: no file over MAX_FILE_LINES lines, no
function over MAX_FUNCTION_LINES lines (from the line of its name to its closing
brace). Fails naming each offender as file:line.

Functions are found by counting braces in the source with comments, string and
character literals and preprocessor lines blanked out: a '{' at file level whose
declaration ends in ')' and holds no '=' opens a function body.

Usage: test-code-size.py [SOURCE_ROOT]   (default: the tree this file is in)
"""

import os
import re
import sys

MAX_FILE_LINES = 1200
MAX_FUNCTION_LINES = 150

LITERAL_OR_COMMENT = re.compile(r'''
      //[^\n]*
    | /\*.*?\*/
    | "(?:\\.|[^"\\\n])*"
    | '(?:\\.|[^'\\\n])*'
''', re.S | re.X)
IDENT_BEFORE = re.compile(r'([A-Za-z_]\w*)\s*$')


def blank(m):
    """The match with every character but newlines made a space."""
    return re.sub(r'[^\n]', ' ', m.group(0))


def strip_source(text):
    """Comments, literals and preprocessor lines (with continuations) blanked."""
    text = LITERAL_OR_COMMENT.sub(blank, text)
    out, cont = [], False
    for line in text.split('\n'):
        directive = cont or line.lstrip().startswith('#')
        cont = directive and line.rstrip().endswith('\\')
        out.append('' if directive else line)
    return '\n'.join(out)


def function_name(decl):
    """(name, offset in decl) of the name before the parameter list that ends decl,
    or None."""
    decl = decl.rstrip()
    if not decl.endswith(')'):
        return None
    depth = 0
    for i in range(len(decl) - 1, -1, -1):
        if decl[i] == ')':
            depth += 1
        elif decl[i] == '(':
            depth -= 1
            if depth == 0:
                m = IDENT_BEFORE.search(decl[:i])
                return (m.group(1), m.start(1)) if m else None
    return None


def functions(text):
    """(name, first line, number of lines) of each function defined in C source text."""
    src = strip_source(text)
    found = []
    depth = 0
    decl_start = 0    # offset where the current file-level declaration begins
    body = None       # (name, first line) while inside a function body
    for i, c in enumerate(src):
        if c == '{':
            if depth == 0:
                decl = src[decl_start:i]
                fn = function_name(decl) if '=' not in decl else None
                if fn:
                    # from the line of the name (a "static int" may stand on the line before)
                    body = (fn[0], src.count('\n', 0, decl_start + fn[1]) + 1)
            depth += 1
        elif c == '}':
            depth -= 1
            if depth == 0:
                if body:
                    last = src.count('\n', 0, i) + 1
                    found.append((body[0], body[1], last - body[1] + 1))
                    body = None
                decl_start = i + 1
        elif c == ';' and depth == 0:
            decl_start = i + 1
    return found


def self_test():
    """The counter on a known input: it must see both functions and their sizes."""
    long_body = ''.join('        x += %d;\n' % i for i in range(150))
    text = ('/* f() { in a comment */\n'
            '#define M(a) { (a); }\n'
            'static const char *s = "g() {";\n'
            'struct S { int a; };\n'
            'static inline __attribute__((always_inline)) int\n'
            'short_fn(int x) {\n'
            "        if (x == '{')\n"
            '                return 1;\n'
            '        return 0;\n'
            '}\n'
            'int long_fn(void) {\n'
            '        int x = 0;\n' + long_body +
            '        return x;\n'
            '}\n')
    got = functions(text)
    want = [('short_fn', 6, 5), ('long_fn', 11, 154)]
    if got != want:
        sys.exit('test-code-size: the counter is broken: %r, expected %r' % (got, want))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    self_test()
    problems, n_files, n_functions = [], 0, 0
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, 'proxyd')):
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.endswith(('.c', '.h')):
                continue
            path = os.path.join(dirpath, fn)
            rel = os.path.relpath(path, root)
            with open(path, encoding='utf-8') as f:
                text = f.read()
            n_files += 1
            n_lines = text.count('\n')
            if n_lines > MAX_FILE_LINES:
                problems.append('%s: %d lines (limit %d)' % (rel, n_lines, MAX_FILE_LINES))
            for name, line, size in functions(text):
                n_functions += 1
                if size > MAX_FUNCTION_LINES:
                    problems.append('%s:%d: %s() is %d lines (limit %d)' %
                                    (rel, line, name, size, MAX_FUNCTION_LINES))
    if n_files < 10 or n_functions < 100:
        sys.exit('test-code-size: only %d files and %d functions under %s/proxyd' % (n_files, n_functions, root))
    for p in problems:
        print(p)
    print('%d files, %d functions checked; %d over the limits' % (n_files, n_functions, len(problems)))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
