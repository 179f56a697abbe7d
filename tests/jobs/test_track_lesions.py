"""``jobs.track_lesions`` on the demo cohort: one subject tracked, one failing subject, resume."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pytest
import pyarrow.parquet as pq

from mdafuse.jobs.track_lesions import baseline_modality, main, subject_table
from mdafuse.cohort import build_pair_table


def test_track_job(ray_local, tmp_path):
    from mdafuse.synthetic.demo_cohort import write_demo_cohort

    cohort = tmp_path / "cohort"
    write_demo_cohort(cohort, 1, 2, 0)
    with open(cohort / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows.append({**rows[0], "subject": "lonely", "session": "ses-01"})  # one time point only
    # follow-up PET without PatientWeight: not convertible to SUV, tracked in Bq/ml with a warning
    import pydicom

    follow = next(r for r in rows if r["session"] != rows[0]["session"])
    for f in sorted((cohort / follow["pet"]).resolve().iterdir()):
        ds = pydicom.dcmread(f)
        del ds.PatientWeight
        ds.save_as(f)
    with open(cohort / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    subjects = subject_table(build_pair_table(cohort / "manifest.csv", "t").table)
    assert subjects.num_rows == 2
    assert sorted(len(json.loads(t)) for t in subjects.column("timepoints").to_pylist()) == [1, 2]

    out = tmp_path / "out"
    args = [str(cohort / "manifest.csv"), "--out", str(out), "--cohort-name", "t", "--run-id", "r", "--no-fuse", "--workers", "2", "-q"]
    assert main(args) == 3  # the one-session subject is an error row
    files = sorted((out / "lesions/cohort=t/run=r").glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    by_status: dict[str, list[dict]] = {}
    for r in table.to_pylist():
        by_status.setdefault(r["status"], []).append(r)
    assert len(by_status["error"]) == 1 and "need at least 2 time points" in by_status["error"][0]["error"]
    ok = by_status["ok"]
    assert {r["timepoint"] for r in ok} == {0, 1} and all(r["track_id"] >= 1 for r in ok)
    assert all(r["size_unit"] and r["n_timepoints"] == 2 for r in ok)
    assert table.schema.field("warnings").type == pa.string()
    assert all(f"{follow['session']}: " in r["warnings"] and "PET not in SUV (units BQML)" in r["warnings"] for r in ok)
    assert all(not r["warnings"].startswith(rows[0]["session"] + ":") for r in ok)  # the baseline is in SUV
    # the follow-up PET is in Bq/ml: its lesions are measured in those units, its response is not evaluable
    assert all("PET not in SUV" in r["note"] and r["response"] == "NE" for r in ok if r["timepoint"] == 1)
    assert all(r["sul_peak"] is not None for r in ok if r["timepoint"] == 0 and r["present"])  # height and sex in the demo headers
    # the demo manifest gives the PET resolution (pet_fwhm_mm): every measured lesion's volume is judged
    assert rows[0]["pet_fwhm_mm"] == "4.5" and all(isinstance(r["volume_reliable"], bool) for r in ok if r["present"])
    responses = pa.concat_tables([pq.read_table(f) for f in sorted((out / "responses/cohort=t/run=r").glob("*.parquet"))]).to_pylist()
    assert len(responses) == 1 and responses[0]["subject"] == ok[0]["subject"] and responses[0]["status"] == "ok"
    assert (responses[0]["response"], responses[0]["response_reason"]) == ("NE", "PET not in SUV at this time point")
    needles = [str(cohort), "lonely", *(r["subject"] for r in rows), "PT/", "MR/"]
    for f in (p for p in out.rglob("*") if p.is_file()):
        data = f.read_bytes()
        assert not any(n.encode() in data for n in needles), f.relative_to(out)
    assert not list((out / "lesions/cohort=t/run=r").glob("_staging/*/*.parquet"))
    subject = ok[0]["subject"]
    assert len(subject) == 16 and "sub-" not in subject  # pseudonymous key
    assert (out / "tracking/cohort=t/run=r" / subject / "tracking.png").is_file()
    first = json.loads((out / "runs/cohort=t/run=r/tracking-summary.json").read_text())
    assert (first["ok"], first["error"], first["processed_this_attempt"]) == (1, 1, 2)
    assert first["salt_is_default"] is True

    assert main(args) == 3  # resume: nothing left to do; the error row is still there
    again = json.loads((out / "runs/cohort=t/run=r/tracking-summary.json").read_text())
    assert (again["skipped_already_done"], again["processed_this_attempt"], again["subjects_written"]) == (2, 0, 2)
    assert sum(pq.read_table(f).num_rows for f in (out / "lesions/cohort=t/run=r").glob("*.parquet")) == table.num_rows
    assert sum(pq.read_table(f).num_rows for f in (out / "responses/cohort=t/run=r").glob("*.parquet")) == 1


def test_process_reports_new_resolved_and_missing_pet(tmp_path):
    """One subject of the come-and-go demo (no Ray): ses-02 has a new and a resolved lesion, ses-03 no PET."""
    from mdafuse.jobs.track_lesions import TrackJobConfig, TrackSubjects
    from mdafuse.synthetic.demo_cohort import write_demo_cohort

    cohort = tmp_path / "cohort"
    manifest = write_demo_cohort(cohort, 1, 3, 0, come_and_go=True)
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[2]["pet"] = ""
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    subjects = subject_table(build_pair_table(manifest, "t").table)
    worker = TrackSubjects(TrackJobConfig(out=str(tmp_path / "out"), cohort="t", run_id="r", fuse=False))
    responses: list[dict] = []
    lesions = worker.process("subj", json.loads(subjects.column("timepoints")[0].as_py()), responses)
    assert {r["status"] for r in lesions} == {"ok"}
    status = {(r["track_id"], r["timepoint_label"]): r["status_at_timepoint"] for r in lesions}
    assert sorted(s for (_, tp), s in status.items() if tp == "ses-02") == ["new", "persisting", "persisting", "resolved"]
    assert {s for (_, tp), s in status.items() if tp == "ses-03"} == {"not_measured"}
    assert all(r["sul_peak"] is not None for r in lesions if r["present"])
    assert "ses-03: no PET" in lesions[0]["warnings"]
    by_tp = {r["timepoint_label"]: r for r in responses}
    assert (by_tp["ses-02"]["response"], by_tp["ses-02"]["n_new_lesions"], by_tp["ses-02"]["n_resolved_lesions"]) == ("PMD", 1, 1)
    assert by_tp["ses-02"]["response_measure"] == "SULpeak"
    assert (by_tp["ses-03"]["response"], by_tp["ses-03"]["response_reason"]) == ("NE", "no PET at this time point")
    out = tmp_path / "out/tracking/cohort=t/run=r/subj"
    assert {p.name for p in out.iterdir()} >= {"lesions.parquet", "response.parquet", "response.csv", "tracking.png", "done.json"}


def test_subject_table_natural_session_order():
    """12 sessions tp1..tp12 given shuffled: text order would put tp10 before tp2."""
    from mdafuse.jobs.track_lesions import natural_key

    sessions = [f"tp{i}" for i in range(1, 13)]
    shuffled = [sessions[i] for i in (9, 1, 11, 0, 4, 10, 2, 7, 3, 8, 5, 6)]
    pairs = pa.Table.from_pylist(
        [{"pair_id": f"p{s}", "subject_id": "subj", "session": s, "kind": "volume", "mr": "", "pet": "", "mr_series_uid": "", "pet_series_uid": "", "label": "", "modality": "PET"} for s in shuffled]
    )
    tps = json.loads(subject_table(pairs).column("timepoints")[0].as_py())
    assert [t["session"] for t in tps] == sessions
    assert sorted(["ses-10", "ses-9", "ses-1"], key=natural_key) == ["ses-1", "ses-9", "ses-10"]
    assert sorted(["b", "a2", "a10", "A3"], key=natural_key) == ["a2", "A3", "a10", "b"]


def test_track_command_cohort_mode(tmp_path, monkeypatch):
    """``mdafuse track COHORT --out URI`` runs the tracking job in this process with the job's own options."""
    import subprocess
    import sys

    from mdafuse.cli import build_parser as cli_parser
    from mdafuse.commands import track as track_cmd
    from mdafuse.jobs import track_lesions

    (tmp_path / "subj/t0").mkdir(parents=True)
    (tmp_path / "subj/t0/mr.png").write_bytes(b"")
    (tmp_path / "tree/a").mkdir(parents=True)
    (tmp_path / "withmanifest").mkdir()
    (tmp_path / "withmanifest/manifest.csv").write_text("subject,session,mr,pet\n")
    assert track_cmd.is_cohort(str(tmp_path / "m.csv")) and track_cmd.is_cohort("s3://b/m.parquet")
    assert track_cmd.is_cohort(str(tmp_path / "tree")) and track_cmd.is_cohort(str(tmp_path / "withmanifest"))
    assert not track_cmd.is_cohort(str(tmp_path / "subj"))
    assert track_cmd.is_cohort(str(tmp_path / "subj"), force=True)

    calls = []
    monkeypatch.setattr(track_lesions, "run_from_args", lambda args: calls.append(args) or 0)
    args = cli_parser().parse_args(["track", "m.csv", "--out", "s3://b/o", "--run-id", "r1", "--workers", "2", "--no-fuse"])
    assert args.func(args) == 0
    assert len(calls) == 1
    expected = vars(track_lesions.build_parser().parse_args(["m.csv", "--out", "s3://b/o", "--run-id", "r1", "--workers", "2", "--no-fuse"]))
    assert {k: getattr(calls[0], k) for k in expected} == expected
    calls.clear()
    args = cli_parser().parse_args(["track", "m.csv", "--out", "o", "--modality", "spect"])
    assert args.func(args) == 0
    assert calls[0].modality == "SPECT" and calls[0].cohort == "m.csv"
    assert track_lesions.build_parser().parse_args(["m.csv", "--modality", "spect"]).modality == "SPECT"
    assert track_lesions.build_parser().parse_args(["m.csv"]).modality is None
    args = cli_parser().parse_args(["track", str(tmp_path / "subj"), "--out", str(tmp_path / "o"), "--run-id", "r1"])
    with pytest.raises(ValueError, match="apply to a COHORT only"):
        args.func(args)
    # the library never imports the top-level entry scripts of jobs/
    code = "import sys, mdafuse.cli, mdafuse.commands.track, mdafuse.commands.run; sys.exit(any(m == 'jobs' or m.startswith('jobs.') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path)).returncode == 0


def test_subject_modality_is_the_baselines():
    """The figures of a subject fuse with its baseline session's modality; mixed sessions leave a note."""
    notes: list[str] = []
    assert baseline_modality([{"session": "t0", "modality": "SPECT"}, {"session": "t1", "modality": "SPECT"}], notes) == "SPECT"
    assert baseline_modality([{"session": "t0", "modality": ""}, {"session": "t1", "modality": ""}], notes) is None
    assert notes == []
    assert baseline_modality([{"session": "t0", "modality": "PET"}, {"session": "t1", "modality": "SPECT"}], notes) == "PET"
    assert notes == ["sessions differ in modality (t0: PET, t1: SPECT); figures fuse with the baseline's weights"]
