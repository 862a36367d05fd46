"""Build the pinned training corpus from the Python standard library's own sources.

Run once; the output is committed under genesis/corpus/ and pinned by SHA-256 in
the genesis files. The PSF license lets us redistribute these files; its text is
copied beside the corpus.

    python scripts/build_corpus.py [--budget BYTES]

The selection is deterministic for a given CPython version: top-level modules of
Lib/ in name order, each under 100 kB, until the byte budget is used.
"""
import argparse
import hashlib
import pathlib
import shutil
import sys
import sysconfig

OUT_DIR = pathlib.Path(__file__).resolve().parent.parent / "genesis" / "corpus"
MAX_FILE_BYTES = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=2_000_000, help="corpus size in bytes")
    args = parser.parse_args()
    lib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    parts = []
    size = 0
    for path in sorted(lib.glob("*.py")):
        data = path.read_bytes()
        if len(data) > MAX_FILE_BYTES:
            continue
        if size + len(data) > args.budget:
            break
        parts.append(b"# ---- Lib/%s ----\n" % path.name.encode() + data)
        size += len(parts[-1])
    corpus = b"".join(parts)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "stdlib.txt").write_bytes(corpus)
    shutil.copyfile(lib / "LICENSE.txt", OUT_DIR / "LICENSE-PSF.txt")
    print(f"{len(parts)} files from CPython {sys.version.split()[0]}, {len(corpus)} bytes, "
          f"sha256 {hashlib.sha256(corpus).hexdigest()}")


if __name__ == "__main__":
    main()
