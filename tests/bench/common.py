"""Helpers shared by the benchmarks: the real captions, generated images, and a clean skip."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CAPTIONS = SHARED / "captions" / "web_alt_text_10k.parquet"
SIZES = ((256, 256), (320, 240), (400, 300), (240, 320), (512, 384), (300, 600), (150, 150), (900, 250))


def real_captions_or_skip() -> list[tuple[str, str]]:
    """(url, caption) of the 10,000 real alt texts; exits 0 with a note when ../shared is absent."""
    if not CAPTIONS.exists():
        print(f"SKIP: {CAPTIONS} not found (benchmarks use ../shared/data; tests never do)")
        sys.exit(0)
    import pyarrow.parquet as pq

    table = pq.read_table(CAPTIONS, columns=["URL", "TEXT"])
    return list(zip(table.column("URL").to_pylist(), table.column("TEXT").to_pylist()))


def generated_image(i: int) -> bytes:
    """A distinct JPEG per i: sizes vary (some too small or too wide for DataComp's rules)."""
    width, height = SIZES[i % len(SIZES)]
    img = Image.new("RGB", (width, height), (i % 251, (i // 251) % 251, (i * 7) % 251))
    img.paste((255 - i % 251, 40, 90), (width // 4, height // 4, width // 2, height // 2))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_pool(folder: Path, pairs: list[tuple[str, str]], per_shard: int = 1000) -> list[str]:
    """Real captions + generated images as webdataset shards (img2dataset layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(pairs), per_shard):
        path = folder / f"{start // per_shard:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(start, min(start + per_shard, len(pairs))):
                url, caption = pairs[i]
                key = f"{i:09d}"
                for name, data in ((f"{key}.jpg", generated_image(i)), (f"{key}.txt", (caption or "").encode()),
                                   (f"{key}.json", json.dumps({"url": url, "key": key}).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(str(path))
    return paths
