"""The README's grounding picture: one sample through the grounding stage, boxes drawn, tokens printed.

The detector is the tests' colour-segmentation adapter (tests/colour_detector.py), because no real
OWL-ViT / OWLv2 / Grounding DINO weights can be had here; everything else is the stage as users run
it (curate, decode, spaCy, WordNet, NMS, referring expressions, renderings, shard). Writes
docs/images/grounding_example.png and prints the sample's KEY.kosmos2.txt and KEY.paligemma.txt.

    .venv/bin/python tests/bench/grounding_example.py
"""

from __future__ import annotations

import json
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw  # noqa: E402

from filters.sample import Sample  # noqa: E402
from manifests.recipe import parse_recipe  # noqa: E402
from manifests.shard_format import decode_image, pair_rows, write_pair_tar  # noqa: E402
from pipelines.drivers.curate import curate  # noqa: E402
from tests.test_grounding_stage import scene  # noqa: E402
from tests.test_grounding_text import DATA_NOUN, INDEX_NOUN  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="grounding-example-"))
    (work / "wordnet").mkdir()
    (work / "wordnet" / "data.noun").write_text(DATA_NOUN)
    (work / "wordnet" / "index.noun").write_text(INDEX_NOUN)
    caption = "a red square and a blue box on a green mat"
    sample = Sample("example", "readme", scene(320, 200, [("green", (10, 150, 310, 195)), ("red", (40, 30, 120, 110)),
                                                          ("blue", (190, 60, 290, 140))]), "png", caption)
    (work / "in").mkdir()
    with open(work / "in" / "00000.tar", "wb") as out:
        write_pair_tar(out, [sample], pair_rows([sample]))
    recipe = parse_recipe({"name": "readme-grounding", "stages": [{"grounding": {
        "detector": {"path": "colour", "adapter": "tests.colour_detector:ColourDetector"},
        "wordnet_dir": str(work / "wordnet")}}]})
    result = curate(recipe, str(work / "in" / "*.tar"), str(work / "out"))
    with tarfile.open(work / "out" / result.manifest.shards[0].name) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    layout = json.loads(members["example.json"])
    image = decode_image(members["example.png"]).convert("RGB").resize((640, 400))
    draw = ImageDraw.Draw(image)
    for phrase in layout["grounding"]:
        if phrase["kind"] != "chunk":
            continue
        for x1, y1, x2, y2, score in phrase["boxes"]:
            box = [x1 * 640, y1 * 400, x2 * 640, y2 * 400]
            draw.rectangle(box, outline=(0, 0, 0), width=3)
            draw.text((box[0] + 4, box[1] + 4), f"{phrase['phrase']} {score:.2f}", fill=(0, 0, 0))
    canvas = Image.new("RGB", (640, 470), (255, 255, 255))
    canvas.paste(image, (0, 0))
    text = ImageDraw.Draw(canvas)
    kosmos = members["example.kosmos2.txt"].decode()
    text.text((6, 406), kosmos[:110], fill=(0, 0, 0))
    text.text((6, 422), kosmos[110:220], fill=(0, 0, 0))
    text.text((6, 444), members["example.paligemma.txt"].decode()[:110], fill=(80, 0, 0))
    out = ROOT / "docs" / "images" / "grounding_example.png"
    canvas.save(out)
    print(f"caption: {caption}")
    print(f"KEY.kosmos2.txt:   {kosmos}")
    print(f"KEY.paligemma.txt: {members['example.paligemma.txt'].decode()}")
    print(f"grounding: {json.dumps(layout['grounding'])}")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
