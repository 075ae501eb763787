"""Generate the Python stubs (and the Envoy descriptor set) from protos/.

    python scripts/gen_protos.py             # regenerate services/common/api/
    python scripts/gen_protos.py --check     # exit 1 when the committed stubs drift
    python scripts/gen_protos.py --descriptor OUT.pb

Generated modules import each other as `slidelane.v1...`; we rewrite that to the
package they live in, so the stubs stay inside the one shared package instead of
claiming a top-level `slidelane` name.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
API_DIR = ROOT / "services" / "common" / "api"
API_PACKAGE = "services.common.api"
_IMPORT_RE = re.compile(r"^(from|import) slidelane\.", re.MULTILINE)


def include_dirs() -> list[str]:
    """protos/, the googleapis protos (annotations, http, httpbody) and the well-known types."""
    googleapis = Path(google.api.__path__[0]).parent.parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    return [str(PROTO_DIR), str(googleapis), str(well_known)]


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))


def _protoc(args: list[str]) -> None:
    argv = ["grpc_tools.protoc", *(f"-I{d}" for d in include_dirs()), *args, *proto_files()]
    if protoc.main(argv) != 0:
        raise SystemExit("protoc failed: see the messages above")


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _protoc([f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"])
    for path in out.rglob("*.py*"):
        text = path.read_text()
        path.write_text(_IMPORT_RE.sub(rf"\1 {API_PACKAGE}.slidelane.", text))
    for folder in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (out / "__init__.py").write_text('"""Generated from protos/ by scripts/gen_protos.py: do not edit."""\n')


def write_descriptor(path: Path) -> None:
    """The descriptor set Envoy's gRPC-JSON transcoder reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _protoc([f"--descriptor_set_out={path}", "--include_imports", "--include_source_info"])


def drifted(committed: Path, fresh: Path) -> list[str]:
    names = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    names |= {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    return sorted(
        str(n)
        for n in names
        if not (committed / n).is_file() or not (fresh / n).is_file() or not filecmp.cmp(committed / n, fresh / n, shallow=False)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when services/common/api/ drifts from protos/")
    parser.add_argument("--descriptor", type=Path, help="also write the Envoy descriptor set here")
    args = parser.parse_args()
    if args.descriptor:
        write_descriptor(args.descriptor)
        return 0
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            stale = drifted(API_DIR, Path(tmp))
        if stale:
            print("generated stubs drift from protos/; run `make proto`:", *stale, sep="\n  ", file=sys.stderr)
            return 1
        return 0
    shutil.rmtree(API_DIR, ignore_errors=True)
    generate(API_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
