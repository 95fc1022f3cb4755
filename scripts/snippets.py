#!/usr/bin/env python3
"""Keeps the C++ examples in the documentation identical to code that is compiled.

Every example lives in a compiled source under tests/snippets/ between two marker comments:

    // snippet-begin: name
    ...code...
    // snippet-end: name

and the documentation says where each example comes from:

  * Markdown (README.md, docs/*.md): an HTML comment on the line before the ```cpp fence,
        <!-- snippet: tests/snippets/readme.cpp#taste -->
  * Header comments (include/awith/**.hpp): a comment line before the indented example,
        // snippet: tests/snippets/stream.cpp#open_connection
        //
        //   auto [reader, writer] = co_await awith::open_connection("example.org", 80);
        //
    (the example ends at the next bare `//` line or at the end of the comment).

`snippets.py check ROOT` fails when an example differs from its source region, when a marker names a
region that does not exist, or when an example has no marker (every ```cpp fence, and every
indented code block in a header comment, must have one). `snippets.py write ROOT` rewrites the
examples from their sources.
"""
import pathlib
import re
import sys
import textwrap

BEGIN = re.compile(r"^\s*// snippet-begin: (\S+)\s*$")
END = re.compile(r"^\s*// snippet-end: (\S+)\s*$")
MD_MARKER = re.compile(r"^<!-- snippet: (\S+)#(\S+) -->\s*$")
HEADER_MARKER = re.compile(r"^(\s*)// snippet: (\S+)#(\S+)\s*$")
BARE_COMMENT = re.compile(r"^\s*//\s*$")
INDENTED_COMMENT = re.compile(r"^(\s*)//   ")


def regions(root, source, cache={}):
    key = (root, source)
    if key not in cache:
        found, current, lines = {}, None, []
        path = root / source
        if not path.is_file():
            cache[key] = None
            return None
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if (m := BEGIN.match(line)):
                current, lines = m.group(1), []
            elif (m := END.match(line)):
                if m.group(1) != current:
                    raise SystemExit(f"{source}:{number}: snippet-end: {m.group(1)} closes {current}")
                found[current] = textwrap.dedent("\n".join(lines)).strip("\n").splitlines()
                current = None
            elif current is not None:
                lines.append(line)
        if current is not None:
            raise SystemExit(f"{source}: snippet {current} is never closed")
        cache[key] = found
    return cache[key]


def region(root, source, name, where, errors):
    found = regions(root, source)
    if found is None:
        errors.append(f"{where}: {source} does not exist")
        return None
    if name not in found:
        errors.append(f"{where}: {source} has no snippet '{name}'")
        return None
    return found[name]


def markdown(root, path, errors, write):
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        if line.startswith("```cpp"):
            marker = MD_MARKER.match(lines[i - 1]) if i > 0 else None
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                errors.append(f"{path.relative_to(root)}:{i + 1}: unclosed ```cpp fence")
                return
            where = f"{path.relative_to(root)}:{i + 1}"
            if not marker:
                errors.append(f"{where}: a ```cpp example without a '<!-- snippet: FILE#NAME -->' line before it")
                out.extend(lines[i + 1:end])
            else:
                code = region(root, marker.group(1), marker.group(2), where, errors)
                shown = lines[i + 1:end]
                if code is not None and code != shown:
                    if write:
                        shown = code
                    else:
                        errors.append(f"{where}: differs from {marker.group(1)}#{marker.group(2)}")
                out.extend(shown)
            i = end
            continue
        i += 1
    if write:
        path.write_text("\n".join(out) + "\n")


def header(root, path, errors, write):
    lines = path.read_text().splitlines()
    rel = path.relative_to(root)
    out, i, covered = [], 0, set()
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = HEADER_MARKER.match(line)
        if not m:
            i += 1
            continue
        indent, source, name = m.groups()
        j = i + 1
        while j < len(lines) and BARE_COMMENT.match(lines[j]):
            out.append(lines[j])
            j += 1
        start = j
        while j < len(lines) and lines[j].lstrip().startswith("//") and not BARE_COMMENT.match(lines[j]):
            j += 1
        shown = [l.strip()[3:] if l.strip().startswith("// ") else "" for l in lines[start:j]]
        shown = textwrap.dedent("\n".join(shown)).splitlines()
        covered.update(range(start, j))
        where = f"{rel}:{i + 1}"
        code = region(root, source, name, where, errors)
        if code is not None and code != shown:
            if write:
                shown = code
            else:
                errors.append(f"{where}: differs from {source}#{name}")
        out.extend(f"{indent}//   {c}".rstrip() for c in shown)
        i = j
    # An indented block set off by bare comment lines, with a line that ends like code, is an
    # example: it needs a marker.
    for k, line in enumerate(lines):
        if k in covered or not INDENTED_COMMENT.match(line) or k == 0 or not BARE_COMMENT.match(lines[k - 1]):
            continue
        block = []
        n = k
        while n < len(lines) and INDENTED_COMMENT.match(lines[n]):
            block.append(re.sub(r"\s+//.*$", "", lines[n].strip()[2:]).rstrip())
            n += 1
        if any(b.endswith((";", "{", "}", "});")) for b in block):
            errors.append(f"{rel}:{k + 1}: a code example in a comment without a '// snippet: FILE#NAME' line")
    if write:
        path.write_text("\n".join(out) + "\n")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "write"):
        raise SystemExit("usage: snippets.py check|write ROOT")
    write = sys.argv[1] == "write"
    root = pathlib.Path(sys.argv[2]).resolve()
    errors = []
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for path in docs:
        markdown(root, path, errors, write)
    headers = sorted((root / "include").rglob("*.hpp"))
    for path in headers:
        header(root, path, errors, write)
    used = sum(len(r) for r in (regions(root, p.relative_to(root).as_posix()) or {} for p in (root / "tests" / "snippets").glob("*.cpp")))
    if errors:
        print("\n".join(errors))
        print(f"snippets: {len(errors)} problem(s); `scripts/snippets.py write .` copies the compiled code into the docs")
        return 1
    print(f"snippets: {len(docs)} documents and {len(headers)} headers match the {used} compiled snippets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
