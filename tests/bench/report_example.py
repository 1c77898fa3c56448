"""The README's report picture: the demo's run (`vlcurate sample-data --n 400 --seed 0`, quickstart
recipe), its report.html rendered by headless Chromium, the top of the page kept.

    .venv/bin/python tests/bench/report_example.py     (needs Debian's chromium)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from manifests.recipe import load_recipe  # noqa: E402
from pipelines.drivers.curate import curate  # noqa: E402
from pipelines.drivers.sample_data import write_pool  # noqa: E402

OUT = ROOT / "docs/images/report_example.png"


def main() -> None:
    browser = shutil.which("chromium") or sys.exit("needs chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_pool(work / "pool", n=400, seed=0)
        curate(load_recipe(ROOT / "manifests/recipes/quickstart.yaml"), f"{work}/pool/shards/*.tar", str(work / "run"))
        shot = work / "shot.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1100,1500", f"--screenshot={shot}", (work / "run" / "report.html").as_uri()],
                       check=True, capture_output=True, timeout=120)
        image = Image.open(shot).convert("RGB")
        image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS).quantize(128).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} KB)")


if __name__ == "__main__":
    main()
