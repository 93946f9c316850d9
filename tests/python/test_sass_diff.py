"""scripts/sass-diff: two builds' kernels compared instruction by instruction (cuobjdump -sass text)."""
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "sass-diff"


def sass(kernels, arch="sm_90a"):
    """cuobjdump -sass shaped text: kernels = [(mangled name, [(instruction, control word)])]."""
    lines = ["", "Fatbin elf code:", "================", f"arch = {arch}", "code version = [1,8]", "",
             f"\tcode for {arch}"]
    for name, instrs in kernels:
        lines.append(f"\t\tFunction : {name}")
        lines.append('\t.headerflags\t@"EF_CUDA_SM90"')
        for i, (text, control) in enumerate(instrs):
            lines.append(f"        /*{16 * i:04x}*/                   {text} ;"
                         f"                          /* 0x{i:016x} */")
            lines.append(f"                                                            /* {control} */")
    return "\n".join(lines) + "\n"


LOOP = [
    ("LDC R1, c[0x0][0x28]", "0x000fe20000000800"),
    ("HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], RZ, !UPT, gsb0", "0x000fe20000000a00"),
    ("@P0 BRA 0x10", "0x000fc4000f8e023f"),
    ("EXIT", "0x000fea0003800000"),
]
OTHER = [("S2R R5, SR_TID.X", "0x000e220000002100"), ("EXIT", "0x000fea0003800000")]


def write(tmp_path, name, kernels):
    path = tmp_path / name
    path.write_text(sass(kernels))
    return path


def run(*args, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env)


def rows(out):
    """{kernel: [arch, instr A, instr B, HGMMA A, HGMMA B, result]} from the table."""
    table = {}
    for line in out.splitlines()[1:]:
        if not line.strip():
            break
        cells = line.split()
        table[cells[0]] = cells[1:6] + [" ".join(cells[6:])]
    return table


def test_identical_builds(tmp_path):
    a = write(tmp_path, "a.sass", [("_Z4loopv", LOOP), ("_Z5otherv", OTHER)])
    b = write(tmp_path, "b.sass", [("_Z5otherv", OTHER), ("_Z4loopv", LOOP)])
    r = run(a, b)
    assert r.returncode == 0, r.stdout + r.stderr
    t = rows(r.stdout)
    assert [t[k][-1] for k in sorted(t)] == ["same", "same"], r.stdout
    loop = next(v for k, v in t.items() if "loop" in k)
    assert loop[:5] == ["sm_90a", "4", "4", "1", "1"]  # instructions and HGMMA on each side
    assert r.stdout.rstrip().endswith("2 of 2 kernels the same")


def test_control_bits_targets_and_instructions(tmp_path):
    a = write(tmp_path, "a.sass", [("_Z4loopv", LOOP)])
    bits = [LOOP[0], (LOOP[1][0], "0x000fe40000000a00")] + LOOP[2:]
    moved = LOOP[:2] + [("@P0 BRA 0x20", LOOP[2][1])] + LOOP[3:]
    changed = LOOP[:1] + [("HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], RZ, !UPT, gsb0", LOOP[1][1])] + LOOP[2:]
    expect = {"bits.sass": (bits, "encoding differs"), "moved.sass": (moved, "targets differ"),
              "changed.sass": (changed, "differs at #1")}
    for name, (instrs, verdict) in expect.items():
        r = run(a, write(tmp_path, name, [("_Z4loopv", instrs)]), "--context", "1")
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        assert [v[-1] for v in rows(r.stdout).values()] == [verdict], (name, r.stdout)
    # the first difference with its context, A's lines then B's, the differing one marked
    detail = [line.split(None, 2) for line in r.stdout.splitlines() if line.startswith("  A") or line.startswith("  B")]
    assert [d[:2] for d in detail] == [["A", "#0"], ["A>", "#1"], ["A", "#2"], ["B", "#0"], ["B>", "#1"], ["B", "#2"]]
    assert detail[4][2].startswith("HGMMA.64x128x16")


def test_anonymous_namespace_hash_is_not_a_difference(tmp_path):
    # The same kernel from two checkouts: nvcc's anonymous-namespace name differs by a hash.
    name = "_ZN6model14cuda45_GLOBAL__N__{}_12_cache_ops_cu_caf1eff311load_kernelEv"
    a = write(tmp_path, "a.sass", [(name.format("fecc5e01"), OTHER)])
    b = write(tmp_path, "b.sass", [(name.format("3adc7f29"), OTHER)])
    r = run(a, b)
    assert r.returncode == 0, r.stdout
    assert [v[-1] for v in rows(r.stdout).values()] == ["same"]


def test_kernels_on_one_side_and_the_filter(tmp_path):
    a = write(tmp_path, "a.sass", [("_Z4loopv", LOOP), ("_Z5otherv", OTHER)])
    b = write(tmp_path, "b.sass", [("_Z4loopv", LOOP)])
    r = run(a, b)
    assert r.returncode == 1
    verdicts = {("loop" in k): v[-1] for k, v in rows(r.stdout).items()}
    assert verdicts == {True: "same", False: "only in A"}
    assert r.stdout.rstrip().endswith("1 of 2 kernels the same")
    r = run(a, b, "--kernel", "loop")
    assert r.returncode == 0 and len(rows(r.stdout)) == 1, r.stdout
    r = run(a, b, "--kernel", "nothing_like_this")
    assert r.returncode == 1 and "no kernels to compare" in r.stdout


def test_binaries_go_through_cuobjdump(tmp_path):
    # A stand-in cuobjdump that prints a dump for any binary it is given.
    dumps = {"x.bin": sass([("_Z4loopv", LOOP)]), "y.bin": sass([("_Z4loopv", LOOP[:3])])}
    fake = tmp_path / "cuobjdump"
    fake.write_text("#!" + sys.executable + "\nimport sys, pathlib\n"
                    f"dumps = {dumps!r}\n"
                    "assert sys.argv[1] == '-sass'\n"
                    "sys.stdout.write(dumps[pathlib.Path(sys.argv[2]).name])\n")
    fake.chmod(0o755)
    for n in dumps:
        (tmp_path / n).write_bytes(b"\x7fELF")
    r = run(tmp_path / "x.bin", tmp_path / "y.bin", "--cuobjdump", fake)
    assert r.returncode == 1, r.stderr
    assert [v[-1] for v in rows(r.stdout).values()] == ["differs at #3"]


def test_errors_exit_2(tmp_path):
    a = write(tmp_path, "a.sass", [("_Z4loopv", LOOP)])
    r = run(a, tmp_path / "missing.sass")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run(a, a, "--kernel", "(")
    assert r.returncode == 2 and "--kernel" in r.stderr
    r = run(a, a, "--context", "-1")
    assert r.returncode == 2 and "--context" in r.stderr
    # A binary without a usable cuobjdump: none found, or (where a toolkit one exists) it
    # rejects the 4-byte stand-in; either way an error, never a verdict.
    (tmp_path / "x.bin").write_bytes(b"\x7fELF")
    env = {"PATH": str(tmp_path / "no_bin"), "CUDA_HOME": str(tmp_path)}
    r = run(tmp_path / "x.bin", a, "--cuobjdump", tmp_path / "not_there", env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no cuobjdump found" in r.stderr or "failed" in r.stderr
