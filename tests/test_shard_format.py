"""The one shard-format module: key rule, member grouping by full key, random-access index, decode."""

from __future__ import annotations

import io
import tarfile

from PIL import Image

from filters.image_checks import ImageProblem
from manifests.shard_format import (add_member, decode_image, index_pairs, iter_tar_records, read_span,
                                    split_member_name, valid_key)
from tests.conftest import make_image


def _tar(members: list[tuple[str, bytes]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            add_member(tar, name, data)
    buffer.seek(0)
    return buffer


def test_key_rule_is_a_full_match():
    assert valid_key("a/0001") and valid_key("000123") and valid_key("x_y-z/a")
    for bad in ("0001\n", "../etc", "/abs", "a//b", "a b", "", "a/", None, 12, "é"):
        assert not valid_key(bad), bad
    # each part becomes a file name with its extension: file systems refuse names over 255 bytes
    assert valid_key("a" * 230 + "/" + "b" * 230) and not valid_key("a" * 231) and not valid_key("x/" + "b" * 231)


def test_web_file_stems_stay_short_enough_for_keys_and_apart():
    from pipelines.io.web_readers import file_stem

    long_a, long_b = "crawl-" + "x" * 300 + "-a.warc.gz", "crawl-" + "x" * 300 + "-b.warc.gz"
    assert len(file_stem(long_a)) <= 150 and file_stem(long_a) != file_stem(long_b)
    assert valid_key(f"{file_stem(long_a)}_000000000123") and file_stem("CC-MAIN-1.warc.gz") == "CC-MAIN-1"


def test_full_paths_are_keys_so_same_basenames_stay_apart():
    members = [("a/0001.jpg", make_image()), ("a/0001.txt", b"first"), ("b/0001.jpg", make_image(colour=(0, 0, 255))),
               ("b/0001.txt", b"second")]
    records = list(iter_tar_records(_tar(members), 1 << 20))
    assert [(r.key, r.parts["txt"]) for r in records] == [("a/0001", b"first"), ("b/0001", b"second")]
    f = _tar(members)
    entries = index_pairs(f)
    assert [(e.key, read_span(f, e.caption)) for e in entries] == [("a/0001", b"first"), ("b/0001", b"second")]
    assert split_member_name("dir/000123.seg.png") == ("dir/000123", "seg.png")


def test_decode_applies_exif_orientation_and_guards_pixels():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 60x40, shown rotated by 90 degrees
    upright = decode_image(make_image(60, 40, exif=exif))
    assert upright.size == (40, 60) and upright.mode == "RGB"
    guarded = decode_image(make_image(300, 300), max_pixels=300 * 299)
    assert isinstance(guarded, ImageProblem) and guarded.reason == "image_too_many_pixels"


def test_high_bit_depth_greys_decode_as_they_look():
    """Pillow's convert("RGB") clipped a mid-grey 16-bit PNG to white and a float grey to black."""
    import numpy as np

    def encoded(array, mode=None, fmt="PNG") -> bytes:
        out = io.BytesIO()
        Image.fromarray(array, mode).save(out, fmt)
        return out.getvalue()

    grey16 = decode_image(encoded(np.full((40, 40), 40000, np.uint16)))
    assert grey16.mode == "RGB" and grey16.getpixel((0, 0)) == (156, 156, 156)  # 40000 / 65535 of white
    dark16 = decode_image(encoded(np.full((40, 40), 200, np.uint16)))  # 16 bits: dark, not an 8-bit 200
    assert dark16.getpixel((0, 0)) == (1, 1, 1)
    assert decode_image(encoded(np.full((40, 40), 0.5, np.float32), "F", "TIFF")).getpixel((0, 0)) == (128,) * 3
    assert decode_image(encoded(np.full((40, 40), 128, np.uint8))).getpixel((0, 0)) == (128, 128, 128)
