"""RapidOCR (rapidocr_onnxruntime 1.4.4, PP-OCRv4 with the same weights as ours) on the quality bench's data.

Dev tooling only: reads <data>/<split>/pages.json and lines.json (written by bench/quality/generate.ts), runs
RapidOCR's default page pipeline on every page and its recognizer alone on every line, and writes what it read as
JSON for bench/quality.ts to score with the same metrics as the server. The pages are read twice: with RapidOCR's
defaults (the shorter side scaled to 736, small pages upscaled) and at Muon's detector size (the longer side at most
1280, as models/ocr/manifest.json's `limitSideLen` and `limitType`), so that speed and quality can be compared at the
same input size. Usage (see run.sh):
    python rapidocr_eval.py <data-dir> <split> <out.json> [max-pages]
"""
import json
import os
import sys
import time

from rapidocr_onnxruntime import RapidOCR


def main() -> None:
    data, split, out = sys.argv[1], sys.argv[2], sys.argv[3]
    max_pages = int(sys.argv[4]) if len(sys.argv) > 4 else None
    root = os.path.join(data, split)
    engine = RapidOCR()
    pages = json.load(open(os.path.join(root, "pages.json")))[:max_pages]
    lines = json.load(open(os.path.join(root, "lines.json")))

    def read(ocr: RapidOCR) -> tuple[dict, float]:
        read_pages = {}
        t0 = time.perf_counter()
        for page in pages:
            result, _ = ocr(os.path.join(root, page["file"]))
            read_pages[page["file"]] = [r[1] for r in (result or [])]
        return read_pages, time.perf_counter() - t0

    read_pages, page_seconds = read(engine)
    muon_size, muon_size_seconds = read(RapidOCR(det_limit_side_len=1280, det_limit_type="max"))
    read_lines = {}
    t0 = time.perf_counter()
    for line in lines:
        result, _ = engine(os.path.join(root, line["file"]), use_det=False, use_cls=False, use_rec=True)
        read_lines[line["file"]] = result[0][0] if result else ""
    line_seconds = time.perf_counter() - t0
    json.dump(
        {
            "tool": "rapidocr_onnxruntime 1.4.4 (defaults)",
            "split": split,
            "pages": read_pages,
            "lines": read_lines,
            "pageSeconds": page_seconds,
            "variants": [
                {
                    "tool": "RapidOCR at Muon's detector size (longer side 1280)",
                    "pages": muon_size,
                    "pageSeconds": muon_size_seconds,
                }
            ],
            "lineSeconds": line_seconds,
        },
        open(out, "w"),
    )


if __name__ == "__main__":
    main()
