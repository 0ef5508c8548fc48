"""The dataset stamp: changes with any file's path, size or time; never reads a file."""

import os
import time

from vggrepro.data import datastamp


def tree(root):
    (root / "train" / "n1").mkdir(parents=True)
    (root / "train" / "n1" / "a.JPEG").write_bytes(b"aaaa")
    (root / "train" / "n1" / "b.JPEG").write_bytes(b"bbbb")
    (root / "val").mkdir()
    (root / "val" / "c.JPEG").write_bytes(b"cccc")
    return root


def test_the_stamp_changes_with_any_file_and_only_then(tmp_path):
    root = tree(tmp_path / "data")
    first = datastamp.stamp(root)
    assert first["files"] == 3 and datastamp.stamp(root) == first
    image = root / "train" / "n1" / "a.JPEG"
    stat = image.stat()
    image.write_bytes(b"AAAA")  # replaced in place, same size ...
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # ... a tick later
    second = datastamp.stamp(root)
    assert second != first
    (root / "val" / "d.JPEG").write_bytes(b"d")
    assert datastamp.stamp(root)["files"] == 4
    (root / "val" / "d.JPEG").unlink()
    (root / ".snakemake_timestamp").write_text("")  # Snakemake's, not the data's
    assert datastamp.stamp(root) == second


def test_a_missing_folder_and_a_symlink_loop_are_stamped_not_raised(tmp_path):
    assert datastamp.stamp(tmp_path / "absent")["digest"] == "absent"
    root = tree(tmp_path / "data")
    os.symlink("loop", root / "train" / "loop")  # points at itself
    stamped = datastamp.stamp(root)
    assert stamped["files"] == 4


def test_write_only_when_changed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tree(tmp_path / "data")
    assert datastamp.write(root, "ilsvrc2012") is True
    assert datastamp.write(root, "ilsvrc2012") is False
    (root / "val" / "e.JPEG").write_bytes(b"e")
    assert datastamp.write(root, "ilsvrc2012") is True


def test_a_linked_class_folder_is_followed_and_a_folder_loop_stamped_once(tmp_path):
    root = tree(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere" / "n2"
    elsewhere.mkdir(parents=True)
    (elsewhere / "x.JPEG").write_bytes(b"xx")
    os.symlink(elsewhere, root / "train" / "n2")
    os.symlink(root / "train", root / "train" / "n1" / "back")  # a loop back up
    first = datastamp.stamp(root)
    assert first["files"] == 5  # a, b, c, x and the loop, recorded once
    (elsewhere / "x.JPEG").write_bytes(b"xxx")  # replaced behind the link
    assert datastamp.stamp(root) != first


def test_an_in_place_edit_that_restores_size_and_mtime_changes_the_stamp(tmp_path):
    """exiftool -P: new bytes, same size, the old mtime put back; the ctime still moves."""
    root = tree(tmp_path / "data")
    image = root / "train" / "n1" / "a.JPEG"
    before = datastamp.stamp(root)
    st = image.stat()
    time.sleep(0.02)  # past the file system's timestamp tick
    with open(image, "r+b") as f:  # in place: same inode
        f.write(b"Z")
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (image.stat().st_size, image.stat().st_mtime_ns, image.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert datastamp.stamp(root) != before


def test_a_file_replaced_by_another_inode_changes_the_stamp(tmp_path):
    root = tree(tmp_path / "data")
    image = root / "train" / "n1" / "a.JPEG"
    before = datastamp.stamp(root)
    st = image.stat()
    other = tmp_path / "other.JPEG"
    other.write_bytes(b"aaaa")  # the same bytes even
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, image)
    assert datastamp.stamp(root) != before


def test_two_links_to_one_folder_are_both_stamped_and_a_name_that_is_not_utf8_is_stamped(tmp_path):
    root = tree(tmp_path / "data")
    shared = tmp_path / "shared-class"
    shared.mkdir()
    (shared / "s.JPEG").write_bytes(b"s")
    os.symlink(shared, root / "train" / "n2")
    os.symlink(shared, root / "train" / "n3")  # not a loop: not above itself
    assert datastamp.stamp(root)["files"] == 5
    (root / "val").joinpath(os.fsdecode(b"caf\xe9.JPEG")).write_bytes(b"x")
    assert datastamp.stamp(root)["files"] == 6


def test_label_files_outside_data_root_are_stamped_and_unread_folders_are_not(tmp_path):
    """Kaggle's download with data.root at ILSVRC/Data/CLS-LOC: the LOC_* files three folders
    up, and a devkit beside data.root, hold labels; Annotations/ is never read."""
    top = tmp_path / "kaggle"
    root = tree(top / "ILSVRC" / "Data" / "CLS-LOC")
    mapping = top / "LOC_synset_mapping.txt"
    mapping.write_text("n1 one\n")
    (top / "ILSVRC" / "Annotations" / "CLS-LOC").mkdir(parents=True)
    first = datastamp.stamp(root, "ilsvrc2012")
    assert first["files"] == 3 + 2 * 2 + 3 * 2  # images; LOC files in 2 places; devkit files in 3
    mapping.write_text("n0 zero\nn1 one\n")  # a wnid added: every label after it shifts
    second = datastamp.stamp(root, "ilsvrc2012")
    assert second != first
    (top / "ILSVRC" / "Annotations" / "CLS-LOC" / "x.xml").write_text("<a/>")
    assert datastamp.stamp(root, "ilsvrc2012") == second  # not read by prepare, not stamped
    devkit = root.parent / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n")
    assert datastamp.stamp(root, "ilsvrc2012") != second
