"""Browser code from the npm registry, fetched at build time and never committed: uPlot (the
dashboard's charts, served by the agent from /static/vendor/) and axe-core (the accessibility
audit of the browser tests, never served). Each is pinned to a version and to the tarball's
sha512 as the registry publishes it (`npm view uplot@1.6.32 dist.integrity`), and checked
before anything is unpacked. `make setup` runs `python -m web.assets`; the files land in
git-ignored folders.

The npm client fetches when it is installed (it honours the machine's registry settings);
otherwise the tarball comes straight from the registry's documented address
(registry.npmjs.org/NAME/-/NAME-VERSION.tgz)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENDOR = ROOT / "static" / "vendor"
# Never served by the agent: only the browser tests read it.
TEST_VENDOR = ROOT.parent / "build" / "test-assets"


@dataclass(frozen=True)
class Asset:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity: sha512 of the tarball, base64
    files: tuple[tuple[str, str], ...]  # (path in the tarball, name in the folder)
    folder: Path

    @property
    def tarball(self) -> str:
        registry = os.environ.get("npm_config_registry", "https://registry.npmjs.org").rstrip("/")
        return f"{registry}/{self.name}/-/{self.name}-{self.version}.tgz"

    def paths(self) -> list[Path]:
        return [self.folder / target for _, target in self.files]


ASSETS = {
    # uPlot: fast time series (thousands of points on a canvas), MIT.
    "uplot": Asset(
        "uplot",
        "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        (
            ("package/dist/uPlot.iife.min.js", "uPlot.iife.min.js"),
            ("package/dist/uPlot.min.css", "uPlot.min.css"),
            ("package/LICENSE", "uPlot.LICENSE"),
        ),
        VENDOR,
    ),
    # axe-core: Deque's accessibility rules engine, MPL-2.0; for the tests only.
    "axe-core": Asset(
        "axe-core",
        "4.14.1",
        "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
        (("package/axe.min.js", "axe.min.js"), ("package/LICENSE", "axe-core.LICENSE")),
        TEST_VENDOR,
    ),
}


class AssetError(RuntimeError):
    pass


def _pin(asset: Asset) -> Path:
    return asset.folder / f".{asset.name}.pinned"


def present(asset: Asset) -> bool:
    """The files are there, from the pinned tarball (a changed pin fetches again)."""
    pin = _pin(asset)
    return (
        pin.is_file()
        and pin.read_text() == asset.integrity
        and all(p.is_file() and p.stat().st_size > 0 for p in asset.paths())
    )


def _download(asset: Asset) -> bytes:
    if shutil.which("npm"):
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                ["npm", "pack", f"{asset.name}@{asset.version}", "--silent", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            tgz = Path(tmp) / f"{asset.name}-{asset.version}.tgz"
            if done.returncode == 0 and tgz.is_file():
                return tgz.read_bytes()
    try:
        with urllib.request.urlopen(asset.tarball, timeout=120) as r:  # noqa: S310 - a fixed https address
            return r.read()
    except OSError as exc:
        raise AssetError(
            f"could not fetch {asset.name}@{asset.version} from the npm registry ({asset.tarball}): {exc}; "
            "the dashboard's charts need it: check the network to the npm registry and run "
            "`python -m web.assets` again"
        ) from None


def _check(asset: Asset, blob: bytes) -> None:
    algo, _, want = asset.integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, blob).digest()).decode()
    if got != want:
        raise AssetError(
            f"{asset.name}@{asset.version}: the tarball's {algo} is {got}, not the pinned {want}: "
            "refusing to unpack it (a changed or corrupted download)"
        )


def fetch(name: str) -> list[Path]:
    """The asset's files, downloaded, checked and unpacked if they are not there yet."""
    asset = ASSETS[name]
    if present(asset):
        return asset.paths()
    blob = _download(asset)
    _check(asset, blob)
    asset.folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member, target in asset.files:
            f = tar.extractfile(member)
            if f is None:
                raise AssetError(f"{asset.name}@{asset.version} has no {member}")
            tmp = asset.folder / (target + ".part")
            tmp.write_bytes(f.read())
            tmp.replace(asset.folder / target)
    _pin(asset).write_text(asset.integrity)
    return asset.paths()


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or ["uplot"]
    try:
        for name in names:
            if name not in ASSETS:
                raise AssetError(f"unknown asset {name!r}: one of {', '.join(ASSETS)}")
            for path in fetch(name):
                print(f"{name}@{ASSETS[name].version}: {path.relative_to(ROOT.parent)}")
    except AssetError as exc:
        print(f"web.assets: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
