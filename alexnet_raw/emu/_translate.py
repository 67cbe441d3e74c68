"""Prepare CUDA C source for the host C++ compiler (the CPU runtime).

Three things cannot be done by macros in cuda_emu.h, so they are done here, on the text:

* ``#include "..."`` of local files is inlined (with ``#line`` markers), so the rewriting below
  also reaches device code in headers;
* every ``__shared__`` declaration becomes a reference into the running block's shared memory
  (``emu::shared_static``), and ``extern __shared__ T name[];`` becomes a pointer to the block's
  dynamic shared memory (``emu::shared_dynamic``);
* the source is scanned for barriers and warp primitives (a module without them runs its threads
  without fibers) and for ``__global__`` functions (the kernels a module exports);
* every barrier and warp-primitive call is marked with its column, ``(::emu::at_site(COLUMN),
  call)``, so that the runtime tells apart two barriers on one line: divergence is detected by
  call site, whatever the line layout;
* optionally (the JIT), kernels are renamed ``__emu_kernel_<name>`` so that a kernel may be named
  like a C library function (``abs``, ``div``) without clashing with its declaration.

Line numbers are preserved: every rewrite keeps the newlines of the text it replaces, and
``#line`` directives name the original files, so compiler errors and barrier sites point at the
real source. This file has no dependencies beyond the standard library because CMake runs it as a
script (``python _translate.py IN OUT -I DIR``) for the host build of the pybind11 extension.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys

_BARRIER_WORDS = re.compile(
    r"\b(__syncthreads\w*|__syncwarp|__shfl\w*_sync|__ballot_sync|__any_sync|__all_sync|"
    r"__activemask|__match\w*_sync|__reduce\w*_sync|__uni_sync)\b"
)
# the calls that wait for other threads (not __activemask, which only reads)
_SITE_CALLS = re.compile(
    r"\b(__syncthreads(?:_count|_and|_or)?|__syncwarp|__shfl\w*_sync|__ballot_sync|__any_sync|__all_sync|"
    r"__match\w*_sync|__reduce\w*_sync|__uni_sync)\s*\("
)
KERNEL_PREFIX = "__emu_kernel_"
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[^\n]*$', re.M)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[^\n]*$", re.M)
_ALIGN = re.compile(r"(__align__|alignas)\s*\(\s*([^()]*)\s*\)")
_PRAGMA_UNROLL = re.compile(r"^([ \t]*)#[ \t]*pragma[ \t]+unroll\b[ \t]*\(?[ \t]*([^)\n]*?)[ \t]*\)?[ \t]*$", re.M)


def translate_pragmas(text: str) -> str:
    """CUDA's `#pragma unroll [N]` becomes GCC's `#pragma GCC unroll N` (full unrolling: 64).

    GCC ignores the CUDA spelling; with the hint it unrolls the small register-tile loops that
    nvcc unrolls, which is what lets it keep such tiles in vector registers.
    """

    def repl(m):
        count = m.group(2).strip()
        if not count:
            count = "64"
        elif not count.isdigit():
            return f"{m.group(1)}/* #pragma unroll {count}: count is not a literal, ignored on the CPU */"
        count = str(max(1, min(int(count), 65534)))
        return f"{m.group(1)}#pragma GCC unroll {count}"

    return _PRAGMA_UNROLL.sub(repl, text)


class TranslationError(ValueError):
    """The source uses a construct the CPU runtime cannot translate."""


@dataclasses.dataclass
class Translation:
    text: str
    uses_barriers: bool
    kernels: list  # (qualified name, is_template)
    param_names: dict = dataclasses.field(default_factory=dict)  # qualified name -> parameter names ("" unnamed)


def mask_comments_and_strings(text: str) -> str:
    """Same length as ``text``, with comments and string/char literals blanked (newlines kept)."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if text[k] != "\n":
                    out[k] = " "
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            for k in range(i + 1, j - 1):
                out[k] = " "
            i = j
        else:
            i += 1
    return "".join(out)


def inline_includes(path: str, include_dirs=(), text: str | None = None, _seen=None, _depth=0) -> str:
    """Inline local ``#include "..."`` files, with #line markers. Unresolved includes stay."""
    if _depth > 64:
        raise TranslationError(f"#include nesting deeper than 64 levels at {path}")
    seen = set() if _seen is None else _seen
    if text is None:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    display = path
    base = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    if _PRAGMA_ONCE.search(text):
        key = os.path.realpath(path)
        if key in seen:
            return ""
        seen.add(key)
        text = _PRAGMA_ONCE.sub("", text)
    pieces, pos, line = [], 0, 1
    masked = mask_comments_and_strings(text)
    for m in _INCLUDE.finditer(text):
        if not masked[m.start() : m.end()].lstrip().startswith("#"):
            continue  # inside a comment
        name = m.group(1)
        found = None
        for d in (base, *include_dirs):
            candidate = os.path.join(d, name)
            if os.path.isfile(candidate):
                found = candidate
                break
        if found is None:
            continue
        pieces.append(text[pos : m.start()])
        line += text.count("\n", pos, m.start())
        body = inline_includes(found, include_dirs, None, seen, _depth + 1)
        pieces.append(f'#line 1 "{found}"\n{body}\n#line {line + 1} "{display}"')
        pos = m.end()
    pieces.append(text[pos:])
    return "".join(pieces)


def _statement_start(masked: str, pos: int) -> int:
    i = pos - 1
    while i >= 0 and masked[i] not in ";{}":
        if masked[i] == "\n":
            # a preprocessor line ends a statement too
            j = masked.rfind("\n", 0, i)
            if masked[j + 1 : i].lstrip().startswith("#"):
                return i + 1
        i -= 1
    return i + 1


def _statement_end(masked: str, pos: int) -> int:
    depth = 0
    for i in range(pos, len(masked)):
        c = masked[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == ";" and depth == 0:
            return i
    raise TranslationError("unterminated __shared__ declaration")


def _split_top_level(s: str, sep: str = ","):
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


_DECLARATOR = re.compile(r"^(?P<head>.*?)(?P<ptr>[\s*&]*)\b(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(\[[^\]]*\]\s*)*)$", re.S)


def _parse_declaration(decl: str, where: str):
    """'float a[4][4], b' -> ('float', [('', 'a', '[4][4]'), ('', 'b', '')])."""
    parts = [p.strip() for p in _split_top_level(decl)]
    m = _DECLARATOR.match(parts[0])
    if not m or not m.group("head").strip():
        raise TranslationError(f"cannot parse __shared__ declaration '{decl.strip()}' at {where}")
    base_type = m.group("head").strip()
    decls = [(m.group("ptr").replace(" ", ""), m.group("name"), m.group("dims").replace(" ", ""))]
    for p in parts[1:]:
        mm = re.match(r"^(?P<ptr>[\s*&]*)(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(\[[^\]]*\]\s*)*)$", p)
        if not mm:
            raise TranslationError(f"cannot parse declarator '{p}' of a __shared__ declaration at {where}")
        decls.append((mm.group("ptr").replace(" ", ""), mm.group("name"), mm.group("dims").replace(" ", "")))
    if "=" in decl:
        raise TranslationError(f"__shared__ variables cannot have initialisers (at {where})")
    return base_type, decls


class _ScopeTracker:
    """Answers 'is position p at file scope?' and 'which namespaces enclose p?'."""

    def __init__(self, masked: str):
        self.events = []  # (pos, stack snapshot)
        stack = []
        self.snapshots = []
        for i, c in enumerate(masked):
            if c == "{":
                start = max(0, i - 300)
                tail = re.split(r"[;{}]", masked[start:i])[-1]
                m = re.search(r"\bnamespace\s*([A-Za-z_]\w*)?\s*$", tail)
                if m:
                    stack.append(("ns", m.group(1) or ""))
                elif re.search(r'\bextern\s+"?\s*C?\s*"?\s*$', tail) or re.search(r"\bextern\s*$", tail):
                    stack.append(("extern", ""))
                else:
                    stack.append(("block", ""))
                self.snapshots.append((i, tuple(stack)))
            elif c == "}":
                if stack:
                    stack.pop()
                self.snapshots.append((i, tuple(stack)))
        self._positions = [p for p, _ in self.snapshots]

    def stack_at(self, pos: int):
        import bisect

        k = bisect.bisect_right(self._positions, pos) - 1
        return self.snapshots[k][1] if k >= 0 else ()

    def at_file_scope(self, pos: int) -> bool:
        return all(kind != "block" for kind, _ in self.stack_at(pos))

    def namespace(self, pos: int) -> str:
        return "::".join(name for kind, name in self.stack_at(pos) if kind == "ns" and name)


_LINE_MARKER = re.compile(r'^#line (\d+) "([^"]*)"', re.M)


def _location(text: str, pos: int, origin: str):
    """(file, line) of position pos, honouring the #line markers of inlined includes."""
    last = None
    for m in _LINE_MARKER.finditer(text, 0, pos):
        last = m
    if last is None:
        return origin, text.count("\n", 0, pos) + 1
    return last.group(2), int(last.group(1)) + text.count("\n", last.end() + 1, pos)


def _rewrite_shared(text: str, origin: str) -> str:
    masked = mask_comments_and_strings(text)
    scopes = _ScopeTracker(masked)
    out, pos, site = [], 0, 0
    for m in re.finditer(r"\b__shared__\b", masked):
        if m.start() < pos:
            continue
        start = _statement_start(masked, m.start())
        end = _statement_end(masked, m.end())
        stmt = text[start : end + 1]
        stmt_masked = masked[start : end + 1]
        line = text.count("\n", 0, m.start()) + 1
        where = "%s:%d" % _location(text, m.start(), origin)
        lead = stmt[: len(stmt) - len(stmt.lstrip())]
        newlines = stmt.count("\n") - lead.count("\n")  # the lead is kept as it is
        body = stmt_masked.strip().rstrip(";")
        align = "1"
        am = _ALIGN.search(body)
        if am:
            align = am.group(2)
            body = _ALIGN.sub(" ", body)
        is_extern = bool(re.search(r"\bextern\b", body))
        body = re.sub(r"\b(extern|static|__shared__)\b", " ", body).strip()
        base_type, decls = _parse_declaration(body, where)
        file_scope = scopes.at_file_scope(m.start())
        pieces = []
        for ptr, name, dims in decls:
            site += 1
            if is_extern:
                if dims != "[]":
                    raise TranslationError(f"extern __shared__ '{name}' must be an unsized array (at {where})")
                if file_scope:
                    pieces.append(
                        f"static inline {base_type}{ptr}* __emu_dynamic_{name}() "
                        f"{{ return reinterpret_cast<{base_type}{ptr}*>(::emu::shared_dynamic()); }} "
                        f"\n#define {name} (__emu_dynamic_{name}())\n"
                    )
                    newlines -= 2
                else:
                    pieces.append(f"{base_type}{ptr}* {name} = reinterpret_cast<{base_type}{ptr}*>(::emu::shared_dynamic());")
                continue
            full = f"{base_type}{ptr}{dims}"
            tag = f"__emu_shared_site_{site}"
            alloc = (
                f"::emu::shared_static(&{tag}, sizeof({full}), "
                f"(alignof({full}) > size_t({align}) ? alignof({full}) : size_t({align})))"
            )
            if dims:
                ref_decl = f"{base_type}{ptr} (&{{n}}){dims}"
                cast = f"*reinterpret_cast<{base_type}{ptr} (*){dims}>({alloc})"
            else:
                ref_decl = f"{base_type}{ptr}& {{n}}"
                cast = f"*reinterpret_cast<{base_type}{ptr}*>({alloc})"
            if file_scope:
                fn = f"__emu_shared_{name}"
                sig = f"{base_type}{ptr} (&{fn}()){dims}" if dims else f"{base_type}{ptr}& {fn}()"
                pieces.append(
                    f"static inline {sig} {{ static char {tag}; return {cast}; }} \n#define {name} ({fn}())\n"
                )
                newlines -= 2
            else:
                pieces.append(f"static char {tag}; {ref_decl.format(n=name)} = {cast};")
        if newlines < 0:
            # the file-scope forms add two newlines; resynchronise the line count
            nl = text.find("\n", end + 1)
            after_file, after_line = _location(text, len(text) if nl < 0 else nl + 1, origin)
            replacement = lead + " ".join(pieces) + f'\n#line {after_line} "{after_file}"\n'
            rest_of_line = text[end + 1 : text.find("\n", end + 1) if text.find("\n", end + 1) >= 0 else len(text)]
            if rest_of_line.strip():
                raise TranslationError(f"put a file-scope __shared__ declaration on its own line (at {where})")
            out.append(text[pos:start])
            out.append(replacement)
            pos = len(text) if nl < 0 else nl + 1
            continue
        replacement = lead + " ".join(pieces) + "\n" * newlines
        out.append(text[pos:start])
        out.append(replacement)
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


_TYPE_WORDS = {"bool", "char", "short", "int", "long", "unsigned", "signed", "float", "double", "void", "const",
               "volatile", "__restrict__", "__restrict", "restrict", "struct", "class", "typename"}


def _parameter_names(masked: str, open_paren: int):
    """Names of the parameters of the list opening at masked[open_paren] ('' for an unnamed one)."""
    depth, i = 0, open_paren
    while i < len(masked):
        depth += {"(": 1, ")": -1}.get(masked[i], 0)
        if depth == 0:
            break
        i += 1
    names = []
    for param in _split_top_level(masked[open_paren + 1 : i]):
        param = re.sub(r"\[[^\]]*\]", " ", param.split("=", 1)[0]).strip()
        m = re.search(r"(?<![\w:])([A-Za-z_]\w*)$", param)
        before = param[: m.start()].strip() if m else ""
        names.append(m.group(1) if m and before and m.group(1) not in _TYPE_WORDS else "")
    return [] if names in ([""], ["void"]) else names


def find_kernels(text: str, param_names: dict | None = None):
    """[(qualified name, is_template)] of every __global__ function defined or declared in text.

    If ``param_names`` is a dict, each kernel's parameter names are stored in it.
    """
    masked = mask_comments_and_strings(text)
    scopes = _ScopeTracker(masked)
    found, seen = [], set()
    for m in re.finditer(r"\b__global__\b", masked):
        rest = masked[m.end() :]
        rest_stripped = re.sub(r"^\s*(__launch_bounds__\s*\([^)]*\)\s*)?", "", rest)
        # void, then __launch_bounds__(...) or a macro standing for it (ALX_GEMM_LAUNCH_BOUNDS(...)), then the name
        mm = re.match(r"\s*(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+"
                      r"(?:[A-Za-z_]\w*\s*\([^()]*\)\s*(?=[A-Za-z_]\w*\s*\())?([A-Za-z_]\w*)\s*\(", rest_stripped)
        if not mm:
            continue
        name = mm.group(1)
        start = _statement_start(masked, m.start())
        is_template = bool(re.search(r"\btemplate\s*<", masked[start : m.start()]))
        ns = scopes.namespace(m.start())
        qualified = f"{ns}::{name}" if ns else name
        if qualified not in seen:
            seen.add(qualified)
            found.append((qualified, is_template))
            if param_names is not None:
                open_paren = m.end() + (len(rest) - len(rest_stripped)) + mm.end() - 1
                param_names[qualified] = _parameter_names(masked, open_paren)
    return found


def _closing_paren(masked: str, open_paren: int) -> int:
    depth = 0
    for i in range(open_paren, len(masked)):
        depth += {"(": 1, ")": -1}.get(masked[i], 0)
        if depth == 0:
            return i
    raise TranslationError("unbalanced parentheses after a barrier call")


def mark_barrier_sites(text: str) -> str:
    """``__syncthreads()`` -> ``(::emu::at_site(COL), __syncthreads())`` for every barrier and warp
    primitive call, COL being the call's column on its line (newlines are kept)."""
    masked = mask_comments_and_strings(text)
    inserts = []  # (position, text); a call's opening mark before the marks of calls nested in it
    for m in _SITE_CALLS.finditer(masked):
        before = masked[: m.start()].rstrip()
        if before.endswith(("::", ".", "->")) or re.search(r"\b(void|unsigned|int|inline|T)\s*$", before):
            continue  # a qualified name, a member or a declaration, not a call of the primitive
        column = m.start() - masked.rfind("\n", 0, m.start())
        inserts.append((m.start(), 0, f"(::emu::at_site({column}), "))
        inserts.append((_closing_paren(masked, m.end() - 1) + 1, 1, ")"))
    out, pos = [], 0
    for at, _, piece in sorted(inserts, key=lambda x: (x[0], -x[1])):
        out.append(text[pos:at])
        out.append(piece)
        pos = at
    out.append(text[pos:])
    return "".join(out)


def kernel_symbol(name_expression: str) -> str:
    """The C++ name of a renamed kernel: 'ns::scale<float>' -> 'ns::__emu_kernel_scale<float>'."""
    expr = name_expression.strip()
    cut = expr.find("<")
    base, args = (expr, "") if cut < 0 else (expr[:cut], expr[cut:])
    scope, sep, last = base.rpartition("::")
    return f"{scope}{sep}{KERNEL_PREFIX}{last.strip()}{args}"


def _rename_kernels(text: str) -> str:
    masked = mask_comments_and_strings(text)
    out, pos = [], 0
    for m in re.finditer(r"\b__global__\b", masked):
        rest = masked[m.end() :]
        mm = re.match(r"(?:\s*__launch_bounds__\s*\([^)]*\))?\s*(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+"
                      r"(?:[A-Za-z_]\w*\s*\([^()]*\)\s*(?=[A-Za-z_]\w*\s*[(<]))?([A-Za-z_]\w*)\s*[(<]", rest)
        if not mm:
            continue
        at = m.end() + mm.start(1)
        out.append(text[pos:at])
        out.append(KERNEL_PREFIX)
        pos = at
    out.append(text[pos:])
    return "".join(out)


def translate(path: str | None, include_dirs=(), text: str | None = None, name: str | None = None,
              rename_kernels: bool = False) -> Translation:
    """Translate one CUDA source (a file, or ``text`` named ``name``) for the CPU runtime.

    ``rename_kernels``: define every kernel as ``__emu_kernel_<name>`` (see ``kernel_symbol``); the
    returned kernel names stay the source's names.
    """
    origin = name or path or "<source>"
    merged = inline_includes(path or origin, include_dirs, text=text)
    # split on #line markers so each piece is rewritten with its own file name for messages
    masked = mask_comments_and_strings(merged)
    uses_barriers = bool(_BARRIER_WORDS.search(masked))
    rewritten = mark_barrier_sites(translate_pragmas(_rewrite_shared(merged, origin)))
    names = {}
    kernels = find_kernels(rewritten, names)
    if rename_kernels:
        rewritten = _rename_kernels(rewritten)
    header = f'#define ALX_EMU_USES_BARRIERS {1 if uses_barriers else 0}\n#line 1 "{origin}"\n'
    return Translation(header + rewritten, uses_barriers, kernels, names)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Translate a CUDA source file for the alexnet_raw CPU runtime.")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("-I", dest="include_dirs", action="append", default=[])
    args = ap.parse_args(argv)
    try:
        t = translate(args.input, args.include_dirs)
    except TranslationError as e:
        print(f"{args.input}: {e}", file=sys.stderr)
        return 1
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(t.text)
    os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
