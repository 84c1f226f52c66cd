from __future__ import annotations

from pathlib import Path

from soxs_es.projections.sof_files import write_sof_folder


def test_sof_folder_writes_changed_keeps_links_and_edits_and_removes_only_its_own_stale_files(tmp_path: Path) -> None:
    folder = tmp_path / "sof"
    folder.mkdir()
    elsewhere = tmp_path / "mine.sof"
    elsewhere.write_text("the user's own\n")
    (folder / "linked.sof").symlink_to(elsewhere)
    (folder / "same.sof").write_text("same\n")
    (folder / "changed.sof").write_text("old\n")
    (folder / "stale.sof").write_text("stale\n")
    (folder / "edited.sof").write_text("edited by hand\n")
    (folder / ".new.sof.abc.tmp").write_text("half")
    wanted = {"linked.sof": "ours\n", "same.sof": "same\n", "changed.sof": "new\n", "new.sof": "new\n"}
    previous = {"stale.sof": "stale\n", "edited.sof": "as we wrote it\n"}

    result = write_sof_folder(folder, wanted, previous)

    assert sorted(result.written) == ["changed.sof", "new.sof"]
    assert result.unchanged == 1
    assert result.removed == ["stale.sof"]
    assert sorted(result.kept_edited) == ["edited.sof", "linked.sof"]
    assert elsewhere.read_text() == "the user's own\n"  # never written through the link
    assert (folder / "changed.sof").read_text() == "new\n" and (folder / "new.sof").read_text() == "new\n"
    assert (folder / "edited.sof").read_text() == "edited by hand\n"
    assert sorted(p.name for p in folder.iterdir()) == ["changed.sof", "edited.sof", "linked.sof", "new.sof",
                                                         "same.sof"]
