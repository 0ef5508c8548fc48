"""Where the images of a dataset are, and which class each one belongs to (data.source).

ilsvrc2012 (and embedded, which the generator writes in this layout):
    train/<wnid>/*.JPEG, in data.root itself or, for the Kaggle download, in
    data.root/ILSVRC/Data/CLS-LOC/. val/ is either folderised (val/<wnid>/*.JPEG) or flat
    (val/ILSVRC2012_val_<8 digits>.JPEG), labelled by LOC_val_solution.csv (Kaggle) or else by
    the devkit (ILSVRC2012_devkit_t12/data/: ILSVRC2012_validation_ground_truth.txt and
    meta.mat, as image-net.org ships them; see vggrepro.data.vallabels).
    LOC_*.csv/txt and the devkit folder are looked for in the CLS-LOC folder, in data.root, and
    in the Kaggle download's top folder (three folders above CLS-LOC), so data.root may name
    either the top folder or CLS-LOC; the devkit also beside data.root (in its parent).
    LOC_synset_mapping.txt, if found, names the classes (else the devkit's meta.mat, else the
    wnid); a train folder it does not list stops with one line, a class it lists without a
    train folder is an `empty_class` row.
imagefolder:
    data.root/train/<class>/... with data.root/val/<class>/..., or data.root/train/<class>/...
    alone (other folders beside train/ and val/ are not read), or data.root/<class>/...;
    without a val/ folder, data.val_fraction of each class is held out (vggrepro.data.scan).
    The class is the folder's name (the "wnid" column of the manifest holds it).

In every layout:
- an image is a file named *.jpg, *.jpeg or *.png, in any case; the decoder reads the content,
  so a PNG named .JPEG is read as the PNG it is. Other files are `other_file` rows (ignored).
- names that start with "." are skipped at every level (.ipynb_checkpoints, .DS_Store, the
  generator's marker): a hidden folder is never a class, so it never shifts the labels.
- class folders are read recursively and links are followed, as torchvision's ImageFolder
  does; a link back to a folder read already (a loop) and a link that resolves to nothing or
  to itself are rows of bad_files.csv.
- an image outside any class folder is an `unlabelled` row; a val class unknown to train, or
  a folder that cannot be listed, stops with one line naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vggrepro.data import vallabels
from vggrepro.data.badfiles import BadFile, from_os_error
from vggrepro.data.ingest import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CLS_LOC = ("ILSVRC", "Data", "CLS-LOC")  # the Kaggle download's folder holding train/ and val/
SYNSET_MAPPING = "LOC_synset_mapping.txt"


@dataclass(frozen=True)
class Candidate:
    split: str  # "train", "val", or "" (imagefolder without val/: split by data.val_fraction)
    path: str  # relative to data.root, forward slashes
    wnid: str


@dataclass
class Layout:
    names: dict[str, str] = field(default_factory=dict)  # class -> readable name, every class folder
    folders: dict[str, str] = field(default_factory=dict)  # class -> its training folder (relative)
    images: list[Candidate] = field(default_factory=list)
    bad: list[BadFile] = field(default_factory=list)


class _Walker:
    """Lists folders below root: hidden names skipped, links followed once, odd entries as rows."""

    def __init__(self, root: Path, layout: Layout, roots: list[Path]):
        self.root, self.layout = root, layout
        self.seen = {self._identity(p) for p in roots if p.is_dir()}

    @staticmethod
    def _identity(folder: Path) -> tuple[int, int]:
        st = os.stat(folder)
        return st.st_dev, st.st_ino

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def listing(self, folder: Path) -> tuple[list[Path], list[str]]:
        """(subfolders, relative paths of image files) of folder, sorted by name; others become rows.

        Strings, not Paths, for the files: ILSVRC-2012 has 1.28M of them.
        """
        prefix = self.rel(folder) + "/" if folder != self.root else ""
        try:
            with os.scandir(folder) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise DatasetError(f"{folder}: cannot be listed ({reason}); expected a readable folder") from None
        folders, files = [], []
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_symlink():
                try:
                    os.stat(entry.path)
                except OSError as err:
                    self.layout.bad.append(from_os_error(rel, err))
                    continue
            if entry.is_dir():
                folders.append(Path(entry.path))
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                files.append(rel)
            else:
                self.layout.bad.append(BadFile(rel, "other_file", "not a .jpg, .jpeg or .png file"))
        return folders, files

    def enter(self, folder: Path) -> bool:
        """False (and a row) for a folder read already: a link loop or a second link to it."""
        key = self._identity(folder)
        if key in self.seen:
            self.layout.bad.append(BadFile(self.rel(folder) + "/", "symlink_loop", "a link to a folder read already"))
            return False
        self.seen.add(key)
        return True

    def images(self, folder: Path) -> list[str]:
        """Every image below folder, recursively (folder already entered)."""
        folders, found = self.listing(folder)
        for sub in folders:
            if self.enter(sub):
                found += self.images(sub)
        return sorted(found)

    def classes(self, folder: Path, what: str) -> list[Path]:
        """The class folders in folder; an image lying beside them has no class."""
        folders, files = self.listing(folder)
        for rel in files:
            self.layout.bad.append(BadFile(rel, "unlabelled", f"an image outside the {what} folders"))
        return folders

    def add_class_images(self, folder: Path, split: str, wnid: str) -> None:
        if self.enter(folder):
            self.layout.images += [Candidate(split, p, wnid) for p in self.images(folder)]


def read(root: Path, source: str) -> Layout:
    if source in ("ilsvrc2012", "embedded"):
        return ilsvrc2012(root)
    if source == "imagefolder":
        return imagefolder(root)
    raise DatasetError(f"data.source: {source!r} is not a layout; expected ilsvrc2012, imagefolder or embedded")


def _cls_loc(root: Path) -> Path:
    if (root / "train").is_dir():
        return root
    kaggle = root.joinpath(*CLS_LOC)
    if (kaggle / "train").is_dir():
        return kaggle
    raise DatasetError(
        f"{root}: no train/ folder; expected ILSVRC-2012 as train/<wnid>/ and val/, "
        f"or the Kaggle download's {'/'.join(CLS_LOC)}/train/<wnid>/"
    )


def _label_folders(root: Path, base: Path) -> list[Path]:
    """Where LOC_*.csv/txt may lie, in the order they are looked for."""
    folders = [base, root]
    resolved = base.resolve()
    if resolved.parts[-3:] == CLS_LOC:
        folders.append(resolved.parents[2])  # the Kaggle download's top folder
    unique = []
    for f in folders:
        if f.resolve() not in [u.resolve() for u in unique]:
            unique.append(f)
    return unique


def _first_file(folders: list[Path], name: str) -> Path | None:
    return next((f / name for f in folders if (f / name).is_file()), None)


def read_synsets(path: Path) -> dict[str, str]:
    """wnid -> class name from LOC_synset_mapping.txt ("n01440764 tench, Tinca tinca")."""
    names = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        wnid, _, name = line.partition(" ")
        if not wnid.startswith("n"):
            raise DatasetError(f"{path}:{n}: {line!r} does not start with a wnid (n########)")
        names[wnid] = name.strip()
    return names


def ilsvrc2012(root: Path) -> Layout:
    base = _cls_loc(root)
    layout = Layout()
    walker = _Walker(root, layout, [root, base, base / "train", base / "val"])
    label_folders = _label_folders(root, base)
    mapping = _first_file(label_folders, SYNSET_MAPPING)
    synsets = read_synsets(mapping) if mapping else {}
    devkit = vallabels.find_devkit([*label_folders, root.resolve().parent])
    for folder in walker.classes(base / "train", "train/<wnid>"):
        wnid = folder.name
        if mapping and wnid not in synsets:
            raise DatasetError(f"{folder}: {wnid!r} is not a class of {mapping}; expected one of its wnids")
        layout.names[wnid] = synsets.get(wnid, wnid)
        layout.folders[wnid] = walker.rel(folder) + "/"
        walker.add_class_images(folder, "train", wnid)
    for wnid in sorted(set(synsets) - set(layout.names)):
        rel = walker.rel(base / "train" / wnid) + "/"
        layout.bad.append(BadFile(rel, "empty_class", f"listed in {SYNSET_MAPPING}, no such folder; later labels shift"))
    val = base / "val"
    if not val.is_dir():
        raise DatasetError(f"{val}: no such folder; expected val/<wnid>/ or a flat val/ with {vallabels.SOLUTION_CSV} or the devkit")
    folders, files = walker.listing(val)
    if folders:
        _folderised_val(walker, folders, files)
    else:
        _flat_val(walker, val, files, label_folders, devkit)
    return layout


def _check_known(layout: Layout, wnid: str, where: str) -> None:
    if wnid not in layout.names:
        raise DatasetError(f"{where}: wnid {wnid!r} is not a class of the training set; expected one of train/'s {len(layout.names)} folders")


def _folderised_val(walker: _Walker, folders: list[Path], files: list[str]) -> None:
    for rel in files:
        walker.layout.bad.append(BadFile(rel, "unlabelled", "an image beside the val/<wnid>/ folders"))
    for folder in folders:
        _check_known(walker.layout, folder.name, str(folder))
        walker.add_class_images(folder, "val", folder.name)


def _flat_val(walker: _Walker, val: Path, files: list[str], label_folders: list[Path], devkit: Path | None) -> None:
    layout = walker.layout
    solution = _first_file(label_folders, vallabels.SOLUTION_CSV)
    if solution:
        labels, source = vallabels.from_solution_csv(solution), solution.name
    elif devkit:
        labels, words = vallabels.from_devkit(devkit)
        source = f"{vallabels.DEVKIT}/data/{vallabels.GROUND_TRUTH}"
        if not _first_file(label_folders, SYNSET_MAPPING):  # the devkit's words name the classes
            layout.names.update({w: words.get(w, w) for w in layout.names})
    else:
        raise DatasetError(
            f"{val}: no val/<wnid>/ folders, no {vallabels.SOLUTION_CSV} and no {vallabels.DEVKIT}/data/ "
            f"(looked in {', '.join(str(f) for f in label_folders)} and beside the data root); expected one of them"
        )
    for wnid, where in labels.values():
        _check_known(layout, wnid, where)
    stems = set()
    for rel in files:
        stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if stem in labels:
            stems.add(stem)
            layout.images.append(Candidate("val", rel, labels[stem][0]))
        else:
            layout.bad.append(BadFile(rel, "unlabelled", f"not listed in {source}"))
    for stem in sorted(set(labels) - set(stems)):
        layout.bad.append(BadFile(walker.rel(val / f"{stem}.JPEG"), "missing", f"labelled in {source}, no such file"))


def imagefolder(root: Path) -> Layout:
    layout = Layout()
    train, val = root / "train", root / "val"
    if val.is_dir() and not train.is_dir():
        raise DatasetError(f"{root}: a val/ folder but no train/; expected train/<class>/ beside val/<class>/, or <class>/ folders alone")
    own_val = train.is_dir() and val.is_dir()
    class_root = train if train.is_dir() else root
    walker = _Walker(root, layout, [root, class_root, *([val] if own_val else [])])
    for folder in walker.classes(class_root, "class"):
        layout.names[folder.name] = folder.name
        layout.folders[folder.name] = walker.rel(folder) + "/"
        walker.add_class_images(folder, "train" if own_val else "", folder.name)
    if own_val:
        for folder in walker.classes(val, "class"):
            if folder.name not in layout.names:
                raise DatasetError(f"{folder}: class {folder.name!r} has no folder in {train}; expected one of its classes")
            walker.add_class_images(folder, "val", folder.name)
    return layout
