from __future__ import annotations

from pathlib import Path

import pytest

from soxs_es.listing import sof_folder
from soxs_es.projections.sof_files import write_sof_folder


def _folder_with_every_case(tmp_path: Path, cut_short: bool) -> tuple[Path, Path]:
    folder = tmp_path / "sof"
    folder.mkdir()
    elsewhere = tmp_path / "mine.sof"
    elsewhere.write_text("the user's own\n")
    (folder / "linked.sof").symlink_to(elsewhere)
    (folder / "same.sof").write_text("same\n")
    (folder / "changed.sof").write_text("old\n")
    (folder / "stale.sof").write_text("stale\n")
    (folder / "edited.sof").write_text("edited by hand\n")
    (folder / "notes.txt").write_text("a person's notes\n")
    if cut_short:
        (folder / ".new.sof.abc.tmp").write_text("half")
    return folder, elsewhere


@pytest.mark.parametrize(("listed_before", "cut_short"), [(False, True), (False, False), (True, False), (True, True)])
def test_sof_folder_writes_changed_keeps_links_and_edits_and_removes_only_its_own_stale_files(
        tmp_path: Path, listed_before: bool, cut_short: bool) -> None:
    """The same outcome whether the folder was listed earlier in the command (then only the files named are
    looked at, unless a write cut short left a temp file) or is listed here; and the digest of its SOF files
    it hands the stamp is that of a listing made afterwards."""
    folder, elsewhere = _folder_with_every_case(tmp_path, cut_short)
    listed = sof_folder(folder) if listed_before else None
    wanted = {"linked.sof": "ours\n", "same.sof": "same\n", "changed.sof": "new\n", "new.sof": "new\n"}
    previous = {"stale.sof": "stale\n", "edited.sof": "as we wrote it\n"}

    result = write_sof_folder(folder, wanted, previous, listed)

    assert sorted(result.written) == ["changed.sof", "new.sof"]
    assert result.unchanged == 1
    assert result.removed == ["stale.sof"]
    assert sorted(result.kept_edited) == ["edited.sof", "linked.sof"]
    assert elsewhere.read_text() == "the user's own\n"  # never written through the link
    assert (folder / "changed.sof").read_text() == "new\n" and (folder / "new.sof").read_text() == "new\n"
    assert (folder / "edited.sof").read_text() == "edited by hand\n"
    assert sorted(p.name for p in folder.iterdir()) == ["changed.sof", "edited.sof", "linked.sof", "new.sof",
                                                         "notes.txt", "same.sof"]
    assert result.sofs == sof_folder(folder).digest


def test_the_digest_of_a_sof_folder_changes_with_any_file_and_not_with_the_order_listed(tmp_path: Path) -> None:
    folder = tmp_path / "sof"
    folder.mkdir()
    for name in ("a.sof", "b.sof"):
        (folder / name).write_text(name)
    first = sof_folder(folder).digest
    (folder / "b.sof").write_text("b.sof, edited")
    assert sof_folder(folder).digest != first
    (folder / "b.sof").unlink()
    assert sof_folder(folder).digest != first
