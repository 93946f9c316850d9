"""scripts/ncu-stalls: stall samples of ncu's source page, summed by reason, opcode and instruction."""
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "ncu-stalls"

HEADER = ["Address", "Source", "Warp Stall Sampling (All Samples)", "Warp Stall Sampling (Not-issued Samples)",
          "Instructions Executed", "stall_barrier", "stall_short_sb", "stall_math", "stall_short_sb (Not Issued)"]


def q(cells):
    return ",".join('"' + str(c) + '"' for c in cells)


def source_csv(tmp_path, kernels):
    """kernels: [(name, [(address, sass, samples, executed, barrier, short_sb, math)])] -> a CSV
    shaped like `ncu --page source --csv --print-source sass` (a name row, a header, rows)."""
    lines = []
    for name, rows in kernels:
        lines.append(q(["Kernel Name", name]))
        lines.append(q(HEADER))
        for addr, sass, samples, executed, barrier, short_sb, math in rows:
            lines.append(q([addr, sass, samples, samples, f"{executed:,}", barrier, short_sb, math, short_sb]))
    path = tmp_path / "source.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


DECODE = ("decode_kernel", [
    ("0x10", "      HMMA.16816.F32.BF16 R4, R8, R12, R4", 60, 2048, 0, 50, 10),
    ("0x20", "@!P0  LDSM.16.M88.4 R8, [R2]", 10, 2048, 0, 10, 0),
    ("0x30", "@P1   BRA 0x10", 30, 1024, 30, 0, 0),
    ("0x40", "      HMMA.16816.F32.BF16 R16, R8, R14, R16", 0, 2048, 0, 0, 0),
])


def test_reasons_opcodes_and_top_instructions(tmp_path):
    r = run(source_csv(tmp_path, [DECODE]), "--top", "2")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "kernel: decode_kernel"
    assert out[1] == "instructions: 4, warp-stall samples: 100"
    reasons = [line.split() for line in out if line.split() and line.split()[0] in ("short_sb", "barrier", "math")]
    # sorted by samples: short_sb 60, barrier 30, math 10 (the Not Issued column is not a reason)
    assert reasons == [["short_sb", "60", "60.0%"], ["barrier", "30", "30.0%"], ["math", "10", "10.0%"]]
    # opcodes without predicates or modifiers; executed counts summed (thousands separators read)
    hmma = next(line.split() for line in out if line.startswith("HMMA"))
    assert hmma == ["HMMA", "60", "60.0%", "4096"]
    ops = [line.split()[0] for line in out if line.split() and line.split()[0] in ("HMMA", "BRA", "LDSM")]
    assert ops == ["HMMA", "BRA"]  # --top 2
    top = [line.split()[:3] for line in out if line.startswith("0x")]
    assert top == [["0x10", "60", "short_sb"], ["0x30", "30", "barrier"]]


def test_several_kernels_and_the_kernel_filter(tmp_path):
    other = ("prefill_kernel", [("0x10", "      FFMA R1, R2, R3, R1", 5, 32, 0, 0, 5)])
    path = source_csv(tmp_path, [DECODE, other])
    r = run(path)
    assert r.returncode == 0, r.stderr
    assert "kernel: decode_kernel" in r.stdout and "kernel: prefill_kernel" in r.stdout
    r = run(path, "--kernel", "prefill")
    assert r.returncode == 0, r.stderr
    assert "kernel: decode_kernel" not in r.stdout
    assert "instructions: 1, warp-stall samples: 5" in r.stdout


def test_a_report_without_samples_says_so(tmp_path):
    quiet = ("k", [("0x10", "      NOP", 0, 32, 0, 0, 0)])
    r = run(source_csv(tmp_path, [quiet]))
    assert r.returncode == 0, r.stderr
    assert "no stall samples" in r.stdout


def test_bad_inputs_are_named(tmp_path):
    r = run(tmp_path / "missing.csv")
    assert r.returncode != 0 and "cannot read" in r.stderr and "missing.csv" in r.stderr
    other = tmp_path / "other.csv"
    other.write_text('"a","b"\n"1","2"\n')
    r = run(other)
    assert r.returncode != 0 and "no kernel with a source table" in r.stderr
    r = run(source_csv(tmp_path, [DECODE]), "--kernel", "nothing")
    assert r.returncode != 0 and "matching 'nothing'" in r.stderr
    r = run(source_csv(tmp_path, [DECODE]), "--top", "0")
    assert r.returncode != 0 and "--top must be at least 1, got 0" in r.stderr
    no_counters = tmp_path / "no_counters.csv"
    no_counters.write_text(q(["Kernel Name", "k"]) + "\n" + q(["Address", "Source", "Instructions Executed"]) + "\n"
                           + q(["0x10", "NOP", 1]) + "\n")
    r = run(no_counters)
    assert r.returncode != 0 and "Warp Stall Sampling (All Samples)" in r.stderr and "--set full" in r.stderr
