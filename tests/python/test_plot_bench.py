"""scripts/plot-bench: bench JSON -> PNG (TFLOPS against batch per decode preset)."""
import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "plot-bench"


def row(preset, batch, us, kernel="sm90a", bar=None):
    flops = 1e9 * batch
    return {"preset": preset, "kind": "decode", "batch": batch, "time_us": us, "kernel": kernel,
            "flops": flops, "tflops": flops / (us * 1e-6) / 1e12, "flashmla_us": bar}


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_writes_png_for_two_series(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps({"rows": [row("model1-c1", 64, 60.0, bar=49.1), row("model1-c1", 128, 110.0, bar=91.0),
                                      row("peak-h64", 148, 1900.0)]}))
    b.write_text(json.dumps([row("model1-c1", 64, 95.0, kernel="portable"), {"preset": "x", "error": "failed"}]))
    out = tmp_path / "plot.png"
    r = run(out, a, b, "--label", "sm90a", "--label", "portable")
    assert r.returncode == 0, r.stderr
    assert "2 presets, 2 series" in r.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rejects_files_without_decode_rows(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"rows": [{"preset": "prefill-h64", "kind": "prefill", "s_kv": 32768,
                                           "time_us": 1.0}]}))
    r = run(tmp_path / "x.png", empty)
    assert r.returncode != 0
    assert "no timed decode rows" in (r.stderr + r.stdout)
    assert not (tmp_path / "x.png").exists()


def test_label_count_must_match(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps([row("model1-c1", 64, 60.0)]))
    r = run(tmp_path / "x.png", a, "--label", "one", "--label", "two")
    assert r.returncode != 0
    assert "--label" in r.stderr
