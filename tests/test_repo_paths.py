"""Every repository path named in a comment, docstring or doc exists, and a name written after a Python
file (``fastconv/backends/plans/kernel_ops.py KernelOps``) is defined in that file: code moves, comments follow."""
import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = (".py", ".h", ".cuh", ".cu", ".cpp", ".inc", ".md", ".sh", ".toml")
EXTRA_FILES = (".ci/run",)
TOP_DIRS = ("csrc", "fastconv", "tests", "scripts", "benchmarks", "docs", ".ci")
# Named on purpose although they are not in the checkout: notes beside it, made by the build, a user's
# own script or kernel (emulator.compile_kernel), the CUDA toolkit's and libjpeg-turbo's headers.
OUTSIDE = {"../shared/FACTS.md", "../shared/STYLE.md", "fastconv/_csrc", "train.py", "script.py", "kernel.cu", "scale.cu",
           "cuda.h", "cuda_fp16.h", "cuda_bf16.h", "cuda_runtime.h", "include/cuda_runtime.h", "jpeglib.h"}
# Notes outside the repository must be written with their place (../shared/FACTS.md), not as if in it.
BARE_OUTSIDE = {"FACTS.md", "STYLE.md"}
# A path: starts at a top-level folder or ../, or has a folder and ends in a source suffix of ours; or a
# bare source file name (jit.py). Data files (.json) a command writes are not checked.
_PATH = re.compile(r"(?<![\w./~$<-])((?:\.\./)*(?:(?:%s)/[\w.*/-]*|[\w.-]+(?:/[\w.*-]+)*\.(?:%s)))(?![\w/])"
                   % ("|".join(re.escape(d) for d in TOP_DIRS), "|".join(s[1:] for s in SUFFIXES)))
# A name after a Python file: "gemm.py gemm_tensor_op", "kernel_ops.py's all_kernel_names()", "common.py (TILES)".
_SYMBOL = re.compile(r"`?(?:'s)?\s+\(?`?([A-Za-z_]\w*(?:\.\w+)*)(\()?")
_DEFINITION = r"^\s*(?:def|class)\s+{0}\b|^\s*{0}\s*[:=]"


def _python_text(source):
    """Comments and docstrings of one Python file, as (line, text)."""
    out = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
           if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                out.append((first.lineno, first.value.value))
    return out


def _c_text(source):
    return [(source.count("\n", 0, m.start()) + 1, m.group())
            for m in re.finditer(r"//[^\n]*|/\*.*?\*/", source, re.S)]


def _hash_text(source):
    return [(n, line[line.index("#"):]) for n, line in enumerate(source.splitlines(), 1) if "#" in line]


def _markdown_text(source):
    """A doc's lines, less its C++ examples: a ```cpp block shows a file the reader would write."""
    out, example = [], False
    for n, line in enumerate(source.splitlines(), 1):
        if line.lstrip().startswith("```"):
            example = not example and line.strip()[3:].strip() in ("c", "cpp", "c++", "cuda")
        elif not example:
            out.append((n, line))
    return out


def commented_text(path, source):
    """The prose of one file: what a reader takes as documentation, not code."""
    if path.suffix == ".py":
        return _python_text(source)
    if path.suffix in (".h", ".cuh", ".cu", ".cpp", ".inc"):
        return _c_text(source)
    if path.suffix == ".md":
        return _markdown_text(source)
    return _hash_text(source)


def _defines(file, name):
    """Whether a Python file defines ``name`` at any level (def, class, assignment, annotated field)."""
    return re.search(_DEFINITION.format(re.escape(name)), file.read_text(errors="replace"), re.M) is not None


def _defined_names(root, files):
    """The capitalised names Python files of the repository define at top level (TILES, KernelOps): a word
    after a path is checked when it is one of these or looks like code, so that prose ("(CuPy's") is not."""
    pattern = re.compile(r"^(?:def|class)\s+(\w+)|^([A-Za-z_]\w*)\s*[:=]", re.M)
    return {name for f in files if f.suffix == ".py"
            for a, b in pattern.findall((root / f).read_text(errors="replace"))
            for name in [a or b] if name != name.lower()}


def _resolve(root, here, name, files):
    """The repository file or folder a written path means, or None: from the root, from the writing file's
    folder, or (for a path written without its top folder, e.g. backends/jit.py) the one file it ends.
    A pattern (benchmarks/results/*.json) needs only its folder: the files may be written later."""
    if "*" in name:
        name = name[:name.index("*")].rpartition("/")[0] or "."
    for base in (root, here):
        target = (base / name).resolve()
        if target.exists() and target.is_relative_to(root):
            return target
    if not name.startswith("."):
        ends = [f for f in files if f.as_posix().endswith("/" + name.rstrip("/")) or f.as_posix() == name]
        if ends:
            return root / ends[0]
    return None


def _problems(root, rel, files, ours):
    for line, text in commented_text(rel, (root / rel).read_text(errors="replace")):
        for m in re.finditer(r"(?<![\w./-])(%s)\b" % "|".join(map(re.escape, BARE_OUTSIDE)), text):
            yield _where(rel, line, text, m), \
                f"{m.group(1)} is outside the repository: write ../shared/{m.group(1)}"
        for m in _PATH.finditer(text):
            name = m.group(1).rstrip(".")
            if name in OUTSIDE | BARE_OUTSIDE or "://" in text[max(0, m.start() - 12):m.start()]:
                continue
            target = _resolve(root, (root / rel).parent, name, files)
            if target is None:
                yield _where(rel, line, text, m), f"{name} does not exist"
                continue
            symbol = _SYMBOL.match(text, m.end())
            # "python setup.py build_ext": a command's argument, not a name in the file
            command = re.search(r"\b(?:python|pytest)\b[^`|;]*$", text[:m.start()].rpartition("\n")[2])
            if target.suffix == ".py" and target.is_file() and symbol and not command and _is_code(symbol, ours):
                missing = next((part for part in symbol.group(1).split(".") if not _defines(target, part)), None)
                if missing:
                    yield _where(rel, line, text, m), f"{name} does not define {missing}"


def _where(rel, line, text, m):
    return f"{rel.as_posix()}:{line + text.count(chr(10), 0, m.start())}"


def _is_code(symbol, ours):
    """A prose word after a path ("jit.py chooses", "(CuPy's") is not a name: a name is one of ours, a call,
    or has an underscore or a dot."""
    name = symbol.group(1)
    return bool(symbol.group(2)) or "_" in name or "." in name or name in ours


def dangling(root, files):
    """Every (file:line, problem) for the paths and names written in the prose of ``files``."""
    every = [Path(f) for f in files]
    known = every + sorted({p for f in every for p in f.parents} - {Path(".")})
    ours = _defined_names(root, every)
    return [problem for rel in every if rel.suffix in SUFFIXES or rel.as_posix() in EXTRA_FILES
            for problem in _problems(root, rel, known, ours)]


def _tracked(root):
    return subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()


def test_every_path_named_in_prose_exists():
    problems = dangling(ROOT, _tracked(ROOT))
    assert not problems, "dangling references:\n" + "\n".join(f"{w}: {p}" for w, p in problems)


@pytest.fixture
def tiny_repo(tmp_path):
    (tmp_path / "csrc" / "ops").mkdir(parents=True)
    (tmp_path / "csrc" / "ops" / "reduce.h").write_text("// sums; see ../ops/reduce.h\n")
    (tmp_path / "fastconv").mkdir()
    (tmp_path / "fastconv" / "plans.py").write_text('"""Launch plans (csrc/ops/reduce.h)."""\nTILES = 1\n')
    return tmp_path


def test_checker_passes_real_paths_and_fails_a_planted_one(tiny_repo):
    files = ["csrc/ops/reduce.h", "fastconv/plans.py"]
    assert dangling(tiny_repo, files) == []
    (tiny_repo / "fastconv" / "ops.py").write_text("# the kernel is csrc/launch/plan.h; ops/reduce.h's modes\n"
                                                   "# launch cost: FACTS.md\n")
    assert dangling(tiny_repo, files + ["fastconv/ops.py"]) == [
        ("fastconv/ops.py:1", "csrc/launch/plan.h does not exist"),
        ("fastconv/ops.py:2", "FACTS.md is outside the repository: write ../shared/FACTS.md")]


def test_checker_fails_a_name_its_file_does_not_define(tiny_repo):
    (tiny_repo / "README.md").write_text("Tiles: fastconv/plans.py TILES.\nModes: `plans.py`'s reduce_modes.\n"
                                         "```cpp\n// csrc/ops/new_op.h: an example to write\n```\n")
    assert dangling(tiny_repo, ["fastconv/plans.py", "README.md"]) == [
        ("README.md:2", "plans.py does not define reduce_modes")]
