"""Output folders never destroy anything (issue 9): ``fit --out``, ``sweep --out`` and ``report``
create a folder new or replace only an earlier output of the same command (the marker written by
:mod:`synthesis.outputs`); everything else is refused with exit 2 and the user's files untouched.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthesis import outputs
from synthesis.cli import main
from synthesis.errors import InputError
from synthesis.outputs import MARKER_NAME, OUTPUT_COMMANDS, atomic_directory, output_folder_name

#: A process id no process can have (above the largest possible pid_max, 2**22).
DEAD_PID = 2**22 + 1
SMALL_CSV = "study,hr,ci_lower,ci_upper\nA,0.8,0.6,1.1\nB,0.7,0.5,0.98\nC,1.0,0.7,1.4\nD,0.9,0.8,1.0\n"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` (relative path -> bytes; None for folders)."""
    return {
        p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
    }


def marker(folder: Path) -> dict:
    return json.loads((folder / MARKER_NAME).read_text())


@pytest.fixture
def studies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small study CSV in a fresh working folder (the current directory)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "studies.csv"
    path.write_text(SMALL_CSV)
    return path


def fit(*args: str) -> int:
    return main(["fit", "studies.csv", "--engine", "exact", *args])


# --------------------------------------------------------------------------------------------
# fit --out and sweep --out never replace what is not theirs
# --------------------------------------------------------------------------------------------
def test_fit_out_dot_refuses_and_keeps_the_working_folder(studies, capsys):
    before = snapshot(studies.parent)
    assert fit("--out", ".") == 2
    out, err = capsys.readouterr()
    assert "folder you are working in" in err and "--out" in err and out == ""
    assert snapshot(studies.parent) == before
    assert fit("--out", "..") == 2
    assert "contains the one you are working in" in capsys.readouterr().err


def test_fit_out_refuses_a_folder_of_user_files(studies, capsys):
    mine = studies.parent / "results"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "run.json").write_text("{}")
    (mine / "figures").mkdir()
    before = snapshot(studies.parent)
    assert fit("--out", "results") == 2
    out, err = capsys.readouterr()
    assert "holds 2 files and 1 folder that synthesis did not write" in err
    assert "figures/" in err and "thesis.tex" in err and "choose a new folder with --out" in err
    assert out == "", "results printed although nothing was written"
    assert snapshot(studies.parent) == before


def test_fit_out_writes_new_and_replaces_its_own_earlier_output(studies, capsys):
    assert fit("--out", "fit") == 0
    out = studies.parent / "fit"
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, "fit.json"]
    assert marker(out) | {"version": None} == {
        "tool": "synthesis", "command": "fit", "version": None, "state": "complete", "files": ["fit.json"],
    }
    (out / "fit.json").write_text("older")
    assert fit("--out", "fit") == 0
    assert json.loads((out / "fit.json").read_text())["engine"] == "exact"
    assert sorted(p.name for p in studies.parent.iterdir()) == ["fit", "studies.csv"]
    # an empty folder may be used: nothing is lost
    (studies.parent / "empty").mkdir()
    assert fit("--out", "empty") == 0
    assert (studies.parent / "empty" / "fit.json").is_file()


def test_fit_out_refuses_its_output_once_the_user_added_a_file(studies, capsys):
    assert fit("--out", "fit") == 0
    (studies.parent / "fit" / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert fit("--out", "fit") == 2
    assert "earlier 'synthesis fit' output but also holds 1 file" in capsys.readouterr().err
    assert (studies.parent / "fit" / "notes.txt").read_text() == "mine"


def test_sweep_out_refuses_an_existing_file(studies, capsys):
    target = studies.parent / "sensitivity"
    target.write_text("a file of mine")
    code = main(["sweep", "studies.csv", "--engine", "exact", "--tau-priors", "halfnormal(0.5)", "--quiet", "--out", "sensitivity"])
    assert code == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "a file of mine"
    assert sorted(p.name for p in studies.parent.iterdir()) == ["sensitivity", "studies.csv"]


def test_sweep_out_refuses_a_fit_output_and_replaces_its_own(studies, capsys):
    args = ["sweep", "studies.csv", "--engine", "exact", "--tau-priors", "halfnormal(0.5)", "--quiet", "--json"]
    assert fit("--out", "fit") == 0
    before = snapshot(studies.parent / "fit")
    capsys.readouterr()
    assert main([*args, "--out", "fit"]) == 2
    assert "holds the output of 'synthesis fit', not of 'synthesis sweep'" in capsys.readouterr().err
    assert snapshot(studies.parent / "fit") == before
    assert main([*args, "--out", "sweep"]) == 0
    assert main([*args, "--out", "sweep"]) == 0
    assert marker(studies.parent / "sweep")["command"] == "sweep"
    assert {"sweep.csv", "sweep.json", "sensitivity.png"} <= set(marker(studies.parent / "sweep")["files"])


# --------------------------------------------------------------------------------------------
# report: safe default names, and run.json / report.html no longer mark a folder as ours
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("..", "report"), (".", "report"), ("", "report"), ("...", "report"), (".hidden", "hidden"),
        ("a/b", "a_b"), ("..\\..\\x", "x"), ("my studies", "my_studies"), ("trials-2024.v2", "trials-2024.v2"),
    ],
)
def test_output_folder_name_is_safe(stem, expected):
    assert output_folder_name(stem, default="report") == expected


@given(st.text(max_size=40))
def test_output_folder_name_never_escapes(stem):
    name = output_folder_name(stem, default="report")
    assert name and name not in (".", "..") and not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\0" not in name
    assert Path(name).name == name


@pytest.mark.slow  # writes a whole report (5-9 s): CI's slow run
def test_report_default_name_of_dots_file_stays_in_reports(studies, capsys):
    dots = studies.parent / "...csv"  # stem ".." used to put the report in the working folder
    dots.write_text(SMALL_CSV)
    before = snapshot(studies.parent)
    assert main(["report", "...csv", "--quiet"]) == 0
    assert marker(studies.parent / "reports" / "report")["command"] == "report"
    after = snapshot(studies.parent)
    assert {k: v for k, v in after.items() if not k.startswith("reports")} == before


def test_report_refuses_a_folder_holding_a_run_json_that_is_not_ours(studies, capsys):
    target = studies.parent / "reports" / "studies"
    target.mkdir(parents=True)
    (target / "run.json").write_text('{"mine": true}')
    (target / "report.html").write_text("<p>my own report</p>")
    (target / "data.xlsx").write_bytes(b"\x00\x01")
    before = snapshot(studies.parent)
    assert main(["report", "studies.csv", "--quiet"]) == 2  # refused before any fitting
    assert "holds 3 files that synthesis did not write" in capsys.readouterr().err
    assert snapshot(studies.parent) == before


# --------------------------------------------------------------------------------------------
# leftovers of a killed run
# --------------------------------------------------------------------------------------------
def test_temporary_folder_of_a_killed_run_is_cleaned_up(studies, capsys):
    target = studies.parent / "fit"
    code = (
        "import os, sys\nfrom synthesis.outputs import atomic_directory\n"
        "with atomic_directory(sys.argv[1], command='fit') as tmp:\n"
        "    (tmp / 'fit.json').write_text('half')\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(target)], check=False)
    left = [p.name for p in studies.parent.iterdir() if p.name.startswith(".fit.tmp-")]
    assert len(left) == 1, "the killed run should have left its temporary folder"
    # a user's folder that merely looks like ours is never touched
    lookalike = studies.parent / ".fit.tmp-0123abcd"
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine")
    assert fit("--out", "fit") == 0
    names = sorted(p.name for p in studies.parent.iterdir())
    assert names == [".fit.tmp-0123abcd", "fit", "studies.csv"]
    assert (lookalike / "keep.txt").read_text() == "mine"


def test_moved_aside_output_of_a_killed_run_is_cleaned_up(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target, command="fit") as tmp:
        (tmp / "fit.json").write_text("x")
    os.replace(target, tmp_path / ".out.old-deadbeef")  # killed between the two renames
    with atomic_directory(target, command="fit") as tmp:
        (tmp / "fit.json").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_temporary_folder_of_a_running_process_is_left_alone(tmp_path):
    with atomic_directory(tmp_path / "a", command="fit") as outer:
        with atomic_directory(tmp_path / "a", command="fit") as inner:
            assert outer.is_dir()
            (inner / "fit.json").write_text("inner")
        (outer / "fit.json").write_text("outer")
    assert (tmp_path / "a" / "fit.json").read_text() == "outer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


# --------------------------------------------------------------------------------------------
# permissions and unwritable destinations
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o002, 0o775, 0o664)])
def test_written_folders_follow_the_umask(studies, capsys, umask, folder, file):
    old = os.umask(umask)
    try:
        assert fit("--out", "fit") == 0
    finally:
        os.umask(old)
    out = studies.parent / "fit"
    assert stat.S_IMODE(out.stat().st_mode) == folder
    assert stat.S_IMODE((out / "fit.json").stat().st_mode) == file
    assert stat.S_IMODE((out / MARKER_NAME).stat().st_mode) == file


def test_read_only_destination_is_exit_2(studies, capsys, monkeypatch):
    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(outputs.os, "mkdir", denied)
    before = snapshot(studies.parent)
    assert fit("--out", "fit") == 2
    out, err = capsys.readouterr()
    assert "could not write the output folder fit: permission denied" in err
    assert "choose a folder you can write to with --out" in err
    assert out == "", "results printed as if the command had succeeded"
    assert snapshot(studies.parent) == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_really_read_only_destination_is_exit_2(studies, capsys):
    parent = studies.parent / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert fit("--out", "locked/fit") == 2
    finally:
        parent.chmod(0o755)
    out, err = capsys.readouterr()
    assert "permission denied" in err and out == ""
    assert list(parent.iterdir()) == []


def test_full_disk_is_exit_2_and_keeps_the_earlier_output(studies, capsys, monkeypatch):
    assert fit("--out", "fit") == 0
    before = snapshot(studies.parent)
    capsys.readouterr()
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "fit.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert fit("--out", "fit", "--json") == 2
    out, err = capsys.readouterr()
    assert "no space left on the device" in err and "free some space" in err
    assert out == "", "results printed as if the command had succeeded"
    assert snapshot(studies.parent) == before


def test_failed_final_rename_restores_the_earlier_output(tmp_path, monkeypatch):
    target = tmp_path / "out"
    with atomic_directory(target, command="report") as tmp:
        (tmp / "report.html").write_text("old")
    before = snapshot(tmp_path)
    real = os.replace

    def refuse(src, dst):
        if Path(dst) == target and ".tmp-" in Path(src).name:  # the new output, not the restore
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        return real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", refuse)
    with pytest.raises(InputError, match="read-only"):
        with atomic_directory(target, command="report") as tmp:
            (tmp / "report.html").write_text("new")
    assert snapshot(tmp_path) == before


def test_a_file_added_during_the_run_is_never_lost(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(InputError, match="did not write"):
        with atomic_directory(target, command="sweep") as tmp:
            (tmp / "sweep.csv").write_text("x")
            target.mkdir()
            (target / "mine.txt").write_text("added meanwhile")
    assert snapshot(tmp_path) == {"out": None, "out/mine.txt": b"added meanwhile"}


# --------------------------------------------------------------------------------------------
# property: whatever is at the destination, a complete new output or a refusal, and no file
# that was not ours is ever removed or changed
# --------------------------------------------------------------------------------------------
NAMES = st.sampled_from(["run.json", "report.html", "fit.json", "notes.txt", "a", "sub/b.csv", ".hidden"])
FILES = st.dictionaries(NAMES, st.binary(max_size=8), max_size=3)
STATE = st.one_of(
    st.just(("missing", None, {})),
    st.tuples(st.just("file"), st.none(), st.just({})),
    st.tuples(st.just("user"), st.none(), FILES),  # an empty dict is an empty folder
    st.tuples(st.just("ours"), st.sampled_from(OUTPUT_COMMANDS), FILES, FILES),  # ours, user extras
    st.tuples(st.just("bad-marker"), st.none(), FILES),
)
LEFTOVER = st.tuples(
    st.sampled_from(["tmp", "old"]),
    st.sampled_from(["none", "temporary-dead", "temporary-alive", "complete"]),
    FILES,
    FILES,
)


def _make_folder(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def _marker_doc(command: str, state: str, files: list[str], pid: int) -> bytes:
    doc = {"tool": "synthesis", "command": command, "version": "0", "state": state}
    doc |= {"files": sorted(files)} if state == "complete" else {"pid": pid}
    return json.dumps(doc).encode()


def _build(root: Path, state: tuple, leftovers: list[tuple]) -> tuple[set[str], bool]:
    """Lay out the destination ``root/out``; return the files that are not ours and whether a
    write of ``fit`` output must succeed."""
    target = root / "out"
    foreign: set[str] = set()
    kind = state[0]
    ok = kind == "missing"
    if kind == "file":
        target.write_bytes(b"user file")
        foreign.add("out")
    elif kind in ("user", "bad-marker"):
        files = dict(state[2])
        if kind == "bad-marker":
            files[MARKER_NAME] = b'{"tool": "someone else"}'
        _make_folder(target, files)
        foreign |= {f"out/{n}" for n in files}
        ok = not files
    elif kind == "ours":
        command, ours, extra = state[1], state[2], {k: v for k, v in state[3].items() if k not in state[2]}
        _make_folder(target, ours | extra)
        (target / MARKER_NAME).write_bytes(_marker_doc(command, "complete", list(ours), 0))
        foreign |= {f"out/{n}" for n in extra}
        ok = command == "fit" and not extra
    for i, (lk, mk, ours, extra) in enumerate(leftovers):
        folder = root / f".out.{lk}-{i:08x}"
        extra = {k: v for k, v in extra.items() if k not in ours}
        _make_folder(folder, ours | extra)
        rel = folder.name
        if mk == "none":
            foreign |= {f"{rel}/{n}" for n in ours | extra}
            continue
        state_name = "complete" if mk == "complete" else "temporary"
        pid = os.getpid() if mk == "temporary-alive" else DEAD_PID
        (folder / MARKER_NAME).write_bytes(_marker_doc("fit", state_name, list(ours), pid))
        if mk == "complete":
            foreign |= {f"{rel}/{n}" for n in extra}
        elif mk == "temporary-alive":
            foreign |= {f"{rel}/{n}" for n in ours | extra}  # not ours to remove: still running
    return foreign, ok


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=STATE, leftovers=st.lists(LEFTOVER, max_size=2), payload=st.binary(max_size=16))
def test_property_complete_output_or_refusal_and_no_foreign_file_lost(state, leftovers, payload):
    with tempfile.TemporaryDirectory() as tmpdir:
        root = Path(tmpdir)
        foreign, ok = _build(root, state, leftovers)
        before = snapshot(root)
        try:
            with atomic_directory(root / "out", command="fit") as tmp:
                (tmp / "fit.json").write_bytes(payload)
                (tmp / "figures").mkdir()
                (tmp / "figures" / "f.png").write_bytes(payload)
        except InputError:
            assert not ok, "refused a destination it may replace"
            assert snapshot(root) == before, "a refusal changed something"
        else:
            assert ok, "replaced a destination that was not ours"
            out = root / "out"
            assert marker(out)["command"] == "fit" and marker(out)["state"] == "complete"
            assert marker(out)["files"] == ["figures/f.png", "fit.json"]
            assert (out / "fit.json").read_bytes() == payload
            assert (out / "figures" / "f.png").read_bytes() == payload
        after = snapshot(root)
        for rel in foreign:
            assert rel in after and after[rel] == before[rel], f"lost or changed {rel}"
        new = {p.name for p in root.iterdir()} - {p.split("/")[0] for p in before}
        assert new <= {"out"}, f"left behind: {new}"
