"""scripts/bench-ab: interleaved rounds of `model1 bench` over several binaries -> one table."""
import json
import os
import pathlib
import stat
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "bench-ab"

# A stand-in for the model1 CLI: `bench ... --json OUT` writes one decode and one prefill row
# whose times come from the environment (FAKE_US, scaled by the round counter in FAKE_LOG), and
# records its arguments; FAKE_FAIL=1 makes it exit 3 without output.
FAKE = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
log = os.environ["FAKE_LOG"]
with open(log, "a") as f:
    f.write(" ".join(args) + "\n")
if os.environ.get("FAKE_FAIL") == "1":
    print("fake failure", file=sys.stderr)
    sys.exit(3)
calls = sum(1 for _ in open(log))
us = float(os.environ["FAKE_US"]) + calls  # later rounds are slower: the minimum is the first
out = args[args.index("--json") + 1]
rows = [{{"preset": "model1-c1", "kind": "decode", "batch": 64, "time_us": us, "kernel": "sm90a"}},
        {{"preset": "prefill-h64", "kind": "prefill", "s_kv": 32768, "time_us": 10 * us, "kernel": "sm90a"}}]
if "FAKE_MHZ" in os.environ:  # the NVML fields of a CUDA build: clock = FAKE_MHZ - call number
    for r in rows:
        r["sm_clock_mhz"] = float(os.environ["FAKE_MHZ"]) - calls
        r["clock_limits"] = ["power cap"] if os.environ.get("FAKE_CAPPED") == "1" else []
json.dump({{"rows": rows}}, open(out, "w"))
'''


def fake_bin(tmp_path, name):
    p = tmp_path / name
    p.write_text(FAKE.format(python=sys.executable))
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def run(*args, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def test_table_ratios_and_json(tmp_path):
    a, b = fake_bin(tmp_path, "a"), fake_bin(tmp_path, "b")
    log = tmp_path / "log"
    out = tmp_path / "ab.json"
    # Both fakes read FAKE_US from the environment; --env gives b its own value.
    r = run("--bin", f"before={a}", "--bin", f"after={b}", "--env", "after:FAKE_US=50", "--preset", "model1-c1",
            "--batch", "64", "--rounds", "2", "--json", out, env={"FAKE_LOG": str(log), "FAKE_US": "100"})
    assert r.returncode == 0, r.stderr
    # calls: before (101), after (52), before (103), after (54): minima 101 and 52
    lines = r.stdout.splitlines()
    c1 = next(line for line in lines if line.startswith("model1-c1"))
    assert c1.split()[1:5] == ["b=64", "101.0", "52.0", "0.515"]
    pf = next(line for line in lines if line.startswith("prefill-h64"))
    assert pf.split()[1:5] == ["s_kv=32768", "1010.0", "520.0", "0.515"]
    calls = log.read_text().splitlines()
    assert len(calls) == 4 and all("--preset model1-c1" in c and "--batch 64" in c for c in calls)
    doc = json.loads(out.read_text())
    assert doc["rounds"] == 2 and doc["env"]["after"] == {"FAKE_US": "50"}
    assert doc["rows"][0]["time_us"] == {"before": [101.0, 103.0], "after": [52.0, 54.0]}


def test_failed_binary_is_reported(tmp_path):
    a, b = fake_bin(tmp_path, "a"), fake_bin(tmp_path, "b")
    r = run("--bin", f"ok={a}", "--bin", f"bad={b}", "--env", "bad:FAKE_FAIL=1", "--preset", "model1-c1",
            "--rounds", "1", env={"FAKE_LOG": str(tmp_path / "log"), "FAKE_US": "10"})
    assert r.returncode == 1
    assert "bad failed (exit 3)" in r.stderr and "fake failure" in r.stderr
    assert "model1-c1" in r.stdout  # the other binary's rows still print


def test_arg_reaches_one_binary_only(tmp_path):
    a = fake_bin(tmp_path, "a")
    log = tmp_path / "log"
    r = run("--bin", f"w={a}", "--bin", f"r={a}", "--arg", "r:--flush-reads", "--preset", "model1-c1", "--rounds",
            "1", "--json", tmp_path / "ab.json", env={"FAKE_LOG": str(log), "FAKE_US": "10"})
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    assert "--flush-reads" not in calls[0] and "--flush-reads" in calls[1]
    assert json.loads((tmp_path / "ab.json").read_text())["args"] == {"w": [], "r": ["--flush-reads"]}


def test_rejects_bad_arguments(tmp_path):
    a = fake_bin(tmp_path, "a")
    assert "at least two --bin" in run("--bin", f"x={a}", "--preset", "p").stderr
    assert "LABEL=PATH" in run("--bin", str(a), "--bin", f"y={a}", "--preset", "p").stderr
    assert "not an executable" in run("--bin", f"x={a}", "--bin", f"y={tmp_path / 'none'}", "--preset", "p").stderr
    assert "given twice" in run("--bin", f"x={a}", "--bin", f"x={a}", "--preset", "p").stderr
    assert "no --bin labelled" in run("--bin", f"x={a}", "--bin", f"y={a}", "--env", "z:A=1", "--preset",
                                      "p").stderr
    assert "no --bin labelled" in run("--bin", f"x={a}", "--bin", f"y={a}", "--arg", "z:--no-flush", "--preset",
                                      "p").stderr
    assert "LABEL:ARG" in run("--bin", f"x={a}", "--bin", f"y={a}", "--arg", "x", "--preset", "p").stderr
    assert "--rounds expects at least 1" in run("--bin", f"x={a}", "--bin", f"y={a}", "--rounds", "0",
                                                "--preset", "p").stderr


def test_clock_column_from_nvml_fields(tmp_path):
    a, b = fake_bin(tmp_path, "a"), fake_bin(tmp_path, "b")
    out = tmp_path / "ab.json"
    r = run("--bin", f"x={a}", "--bin", f"y={b}", "--env", "y:FAKE_US=50", "--env", "y:FAKE_CAPPED=1",
            "--preset", "model1-c1", "--rounds", "2", "--json", out,
            env={"FAKE_LOG": str(tmp_path / "log"), "FAKE_US": "100", "FAKE_MHZ": "1990"})
    assert r.returncode == 0, r.stderr
    assert "SM MHz (x/y)" in r.stdout
    # calls 1..4: x (101 us, 1989 MHz), y (52, 1988), x (103, 1987), y (54, 1986): fastest rounds are the first
    c1 = next(line for line in r.stdout.splitlines() if line.startswith("model1-c1"))
    assert c1.split()[-1] == "1989/1988*"
    doc = json.loads(out.read_text())
    assert doc["rows"][0]["sm_clock_mhz"] == {"x": [1989.0, 1987.0], "y": [1988.0, 1986.0]}
    assert doc["rows"][0]["clock_limits"]["y"] == [["power cap"], ["power cap"]]


def test_no_clock_column_without_nvml_fields(tmp_path):
    a, b = fake_bin(tmp_path, "a"), fake_bin(tmp_path, "b")
    r = run("--bin", f"x={a}", "--bin", f"y={b}", "--preset", "model1-c1", "--rounds", "1",
            env={"FAKE_LOG": str(tmp_path / "log"), "FAKE_US": "100"})
    assert r.returncode == 0, r.stderr
    assert "SM MHz" not in r.stdout
