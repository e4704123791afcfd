"""Is a change to the CUDA kernels neutral? Compile the kernel translation units of two git revisions (or a revision
and the working tree) to cubins for one architecture and compare, byte for byte, every kernel's machine code
(.text) and what the driver reads about it (.nv.info: registers, parameters, barriers; .nv.shared: static shared
memory; .nv.constant0: the parameter bank).

Needs nvcc only (no GPU, no cuobjdump). Identical kernels run identically; the host side (the handler, the launch
decision in ffi/core) is not compared: its changes are covered by the tests.

    python scripts/cubin_diff.py 6345bba            # that revision against the working tree, sm_90
    python scripts/cubin_diff.py HEAD~1 HEAD --arch sm_100

Prints, per translation unit, how many kernel .text sections are the same and which differ; exits 1 if any does.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNITS = ("kernels_general_smem", "kernels_general_low_smem", "kernels_warp_smem", "kernels_warp_low_smem",
         "kernels_mid_smem", "kernels_mid_low_smem", "wide_kernels")


KERNEL_SECTIONS = (".text.", ".nv.info.", ".nv.shared.", ".nv.constant0.")


def text_sections(cubin: Path) -> dict[str, bytes]:
    """The per-kernel sections of an ELF64 cubin (KERNEL_SECTIONS), by name with the per-file hashes of anonymous
    namespaces removed."""
    d = cubin.read_bytes()
    if d[:4] != b"\x7fELF" or d[4] != 2:
        raise ValueError(f"{cubin} is not an ELF64 file")
    shoff, = struct.unpack_from("<Q", d, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    out = {}
    for h in headers:
        start = names_at + h[0]
        name = d[start:d.index(b"\0", start)].decode()
        if name.startswith(KERNEL_SECTIONS):
            name = re.sub(r"_(GLOBAL__N__|INTERNAL_)[0-9a-f]{8}_", r"_\1_", name)
            out[name] = d[h[4]:h[4] + h[5]]
    return out


def source_tree(rev: str | None, into: Path) -> Path:
    """The ffi/ tree of `rev` (None: the working tree) under `into`."""
    if rev is None:
        return ROOT
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "ffi"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def compile_unit(src: Path, unit: str, arch: str, out: Path, include: str) -> Path:
    cubin = out / f"{unit}.cubin"
    subprocess.run(["nvcc", "-O3", "-DNDEBUG", "-std=c++17", "--expt-relaxed-constexpr", f"-arch={arch}", "-cubin",
                    f"-I{src / 'ffi'}", "-isystem", include, "-o", str(cubin),
                    str(src / "ffi" / "cuda" / f"{unit}.cu")], check=True)
    return cubin


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev_a", help="a git revision")
    ap.add_argument("rev_b", nargs="?", default=None, help="another revision (default: the working tree)")
    ap.add_argument("--arch", default="sm_90", help="the SASS architecture to compare (default sm_90)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel nvcc processes (default 2)")
    args = ap.parse_args(argv)
    import jax.ffi

    include = jax.ffi.include_dir()
    with tempfile.TemporaryDirectory(prefix="cubin_diff_") as tmp:
        trees, outs = [], []
        for i, rev in enumerate((args.rev_a, args.rev_b)):
            trees.append(source_tree(rev, Path(tmp) / f"src{i}"))
            outs.append(Path(tmp) / f"out{i}")
            outs[-1].mkdir()
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            jobs = {(i, u): pool.submit(compile_unit, trees[i], u, args.arch, outs[i], include)
                    for u in UNITS for i in (0, 1)}
            cubins = {k: f.result() for k, f in jobs.items()}
        differ = 0
        for unit in UNITS:
            a, b = text_sections(cubins[0, unit]), text_sections(cubins[1, unit])
            bad = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            differ += len(bad)
            print(f"{unit}: {len(set(a) | set(b)) - len(bad)} kernel sections the same, {len(bad)} differ")
            for k in bad:
                print(f"  {k[:100]}: {len(a.get(k, b''))} -> {len(b.get(k, b''))} bytes")
    print(f"{args.rev_a} vs {args.rev_b or 'the working tree'} ({args.arch}): "
          + ("identical kernels" if not differ else f"{differ} kernel sections differ"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
